// `moba check`: the agreement checks of SEMANTICS.md §5 for chosen implementations on one problem.
//   gating         the implementation's block sets against the float64 reference's
//   forward        out, lse with the reference's selection fed to every implementation
//   backward       dq, dk, dv likewise
//   zero_sparsity  k >= n: out, lse, dq, dk, dv against float64 full causal attention
// One record (a CheckRecord of harness/records.hpp, returned as its JSON) per (implementation,
// check, tensor), figures kept whatever the outcome.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/problem.hpp"
#include "harness/input_families.hpp"
#include "harness/registry.hpp"
#include "core/tensors.hpp"

namespace moba {

// The truth a check judges against (SEMANTICS.md §3.1): the float64 CPU reference, or the
// float64 GPU one (reference/gpu/attention64.hpp) for lengths the CPU cannot reach. Both judge
// against the float64 gating's selection.
enum class ReferenceKind { cpu, gpu };

struct CheckOptions {
    std::vector<const Implementation*> impls;  // empty with no GPU: the baseline is checked
    ReferenceKind reference = ReferenceKind::cpu;
    // Also check the zero-sparsity equivalence (topk raised to n) when the problem is sparse.
    bool add_zero_sparsity = true;
    bool gpu = true;  // false: no GPU present; only the CPU baseline is judged
    // Only the gating check, against the float64 gating (fast at paper sizes: 1M tokens at block
    // 4096, 512K at block 128); no attention truth, no zero-sparsity case.
    bool gating_only = false;
    // Call each implementation's gating, forward and backward a second time on the same
    // workspace (forward, backward, forward, backward, as training steps do) and judge those
    // calls too; only a failure the first call did not have adds records (`--once` turns it off).
    bool call_twice = true;
    // Called when a phase of a case starts ("drawing inputs", "float64 gating", "float64 truth",
    // "baseline", "naive", ...), for progress lines inside a long case. May be empty.
    std::function<void(const std::string& phase)> progress;
};

struct CheckCase {
    Problem problem;
    std::uint64_t seed = 0;
    InputFamily inputs = InputFamily::normal;  // how the inputs are drawn (input_families.hpp)
};
// For GoogleTest's messages: the flags and seed that reproduce the case.
void PrintTo(const CheckCase& c, std::ostream* os);

// Never throws for a failing implementation: errors become records with outcome "failed".
// Draws the inputs from c.seed.
std::vector<nlohmann::json> run_checks(const CheckCase& c, const CheckOptions& options);
// The same on given inputs (NaN or Inf in them is reported as a failed "inputs" record).
std::vector<nlohmann::json> run_checks_on(const CheckCase& c, const HostInputs& inputs,
                                          const CheckOptions& options);

// Largest problem the float64 CPU reference takes on: attended pairs x D (about a minute on
// 16 cores). Larger problems are refused with a pointer to --reference gpu.
inline constexpr double kMaxCpuReferenceWork = 4e11;

// The float64 CPU truth's work for one problem, forward and backward (attended pairs x D,
// dense pairs at zero sparsity), compared with kMaxCpuReferenceWork.
double cpu_reference_work(const Problem& p);

// Host bytes run_checks holds at its peak for one case: the inputs (q, k, v, dout as float),
// the float64 gating and truth tensors with the reference's own scratch, the baseline's float
// tensors and, with a GPU, one implementation's results copied back; the zero-sparsity case
// (options.add_zero_sparsity) counted where it is the larger. An estimate to refuse on, within
// a few percent of the tensors' sizes; the process's own footprint is not in it.
double check_host_bytes(const Problem& p, const CheckOptions& options);

// MemAvailable of /proc/meminfo's text, in bytes; -1 when the line is missing or malformed.
std::int64_t parse_mem_available(std::string_view meminfo);
// MemAvailable of this machine now, in bytes; -1 when it cannot be read.
std::int64_t host_memory_available();

// Why one case must not start, decided before its inputs are drawn (so a refusal costs
// nothing). Each is empty when the case may start; a message names the estimate, the limit and
// the way out (a smaller shape, --reference gpu, --gating-only).
//   host memory: check_host_bytes over `host_available` bytes (negative: unknown, not checked)
//   cpu truth:   a float64 CPU truth (zero-sparsity case included) over kMaxCpuReferenceWork
//   device:      with a GPU, no implementation to check whose run fits in free device memory
std::string host_memory_refusal(const CheckCase& c, const CheckOptions& options, std::int64_t host_available);
std::string cpu_reference_refusal(const CheckCase& c, const CheckOptions& options);
std::string device_memory_refusal(const CheckCase& c, const CheckOptions& options);

// How many phases (options.progress calls) run_checks makes for this case: drawing inputs; then
// per pass (the case, and the zero-sparsity case beside a single configuration) the float64
// gating, the truth and the baseline (gating alone with --gating-only), one per implementation
// it will check, and the zero-sparsity marker. Progress lines divide by it for an ETA.
int expected_phases(const CheckCase& c, const CheckOptions& options);

// The command line that reproduces one record: "moba check <problem flags> --impl X --seed N".
std::string reproduce_command(const CheckCase& c, const std::string& impl, ReferenceKind ref);

}  // namespace moba
