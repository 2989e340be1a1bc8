// Built-in matrices of problems for `moba check --suite` and the GPU tests.
#pragma once

#include <string_view>
#include <vector>

#include "harness/check.hpp"

namespace moba {

// The families a suite cycles through unless told otherwise: all seven (input_families.hpp).
// `peaked` and `large_v` joined once the baseline's scores and dP followed the tensor cores'
// accumulation (SEMANTICS.md §5.1, the tensor-core model).
std::vector<InputFamily> suite_input_families();

// quick: MHA, GQA, MQA (4 query heads; 4, 2, 1 kv heads) x bf16, fp16 x D 64, 128 x lengths
// 1, 113, 1023, 4097 and a mixed batch {1000, 17, 2049, 1} x k in {1, 3, >= n}.
// Block size per length so every length has several blocks: 16, 32, 128, 256, 128. Then six
// cases in the paper's layouts at short lengths (harness/suite.cpp): 32 query heads in groups of
// 32 (D 128 bf16, D 64 fp16, and zero sparsity for the dense entries) and of 4, 16 heads at block
// 128 and top-k 8, a block of 2048 keys (16 key tiles), and Figure 2a's top-k 12 (the gating's
// 16-entry lists) twice; and three batches of 10 sequences with softmax scales other than
// 1/sqrt(D) (one at zero sparsity).
// Seeds are base_seed + index, so each case is reproducible on its own. Case i draws its inputs
// from families[i % families.size()]: by default suite_input_families() in turn.
std::vector<CheckCase> quick_suite(std::uint64_t base_seed,
                                   const std::vector<InputFamily>& families = suite_input_families());
// long: lengths up to 64K for --reference gpu (the float64 GPU truth, SEMANTICS.md §3.1).
std::vector<CheckCase> long_suite(std::uint64_t base_seed,
                                  const std::vector<InputFamily>& families = suite_input_families());

// paths: the selection paths the quick matrix (at most 64 blocks; k 12 twice, else k <= 9 or
// k >= n) never takes: k 8, 12, 20 and 70 (a gating's lists of 8, 16 and 64 entries, and its
// multi-pass fallback past 65; as many sparse waves) over rows with 94 and 257 past blocks
// (several 64-block gating tiles), and k 3 at block 192 (a block whose second 128-key tile is
// partial), GQA (4 query heads, 2 kv heads) x bf16, fp16 x D 64, 128: 36 cases.
std::vector<CheckCase> paths_suite(std::uint64_t base_seed,
                                   const std::vector<InputFamily>& families = suite_input_families());

// Throws std::invalid_argument naming the suite when it is unknown, or for no family.
std::vector<CheckCase> named_suite(std::string_view name, std::uint64_t base_seed,
                                   const std::vector<InputFamily>& families = suite_input_families());

}  // namespace moba
