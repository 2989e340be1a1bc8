// `moba check` on decode steps (SEMANTICS.md §9): every implementation with a decode step
// against the float64 decode truth (ref::decode_forward: prefill's rows at the new tokens'
// positions), by prefill's rules (§5):
//   gating        the step's own selection against the float64 one (compare_gating_rows: near
//                 ties excused only within the score error, exact ties to the lower index)
//   forward       out, lse with the float64 selection fed to the step (gate off), bounds from the
//                 same-precision baseline of those rows
//   decode_step   the gated step's out and lse bitwise equal to attending the selection it wrote
//                 (the gated path may not attend anything else, e.g. a group's union)
//   zero_sparsity k >= n: out, lse against float64 full attention of the rows; the dense decode
//                 entries are checked only here
// Records are check records (harness/records.hpp) with a "decode" object (q_lens, page_size).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/check.hpp"
#include "harness/decode_run.hpp"

namespace moba {

// The decode suite: MHA, GQA, MQA (4 query heads; 4, 2, 1 kv heads and 16 over 2) x bf16, fp16 x
// D 64, 128 over four batches: one new token on caches of 1, 300, 1024 and 4097 tokens (a
// one-token cache, a partial own block, a full one, a long one); chunks of 7 and 64 new tokens
// across block boundaries; a whole 513-token prefill; one token on a 16K cache. Top-k 1 and 3;
// every other case paged (24-token pages: they divide neither the block nor a cache length);
// case i draws family i mod count. Each case is checked beside its zero-sparsity twin.
std::vector<DecodeCase> decode_suite(std::uint64_t base_seed,
                                     const std::vector<InputFamily>& families);

// "moba check <case flags> --impl X": the command that reruns one decode record.
std::string decode_reproduce_command(const DecodeCase& c, const std::string& impl);

// Never throws for a failing implementation: errors become failed records. With no GPU
// (options.gpu false) the same-precision baseline is judged against float64 instead
// (rel L2 <= 4 u). Adds the zero-sparsity twin when options.add_zero_sparsity and the case
// is sparse. Only options.impls that have a decode step are run; the others are recorded as
// not supported.
std::vector<nlohmann::json> run_decode_checks(const DecodeCase& c, const CheckOptions& options);

// Phases of run_decode_checks (for progress lines): inputs, then per pass truth, baseline and
// one per implementation run.
int expected_decode_phases(const DecodeCase& c, const CheckOptions& options);

}  // namespace moba
