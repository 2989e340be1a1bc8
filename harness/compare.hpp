// The agreement rules of SEMANTICS.md §5, applied to one tensor or one selection. With factor
// 2 (forward) or 3 (gradients) and atol the rounding step of the dtype near 0.3
// (FlashAttention's choice: 2^-9 bf16, 2^-12 fp16, 2^-25 fp32; 1e-5 for the fp32 lse):
//   whole tensor:  max|x - ref| <= factor * max|x_base - ref| + atol
//   every row:     max over the row |x - ref| <= factor * (the same on the baseline's row) + atol
//                  (rows of D elements: one (token, head); an error confined to a few rows or
//                  to the routed rows cannot hide under the largest rows' bound)
//   relative L2:   ||x - ref|| / ||ref|| <= factor * ||x_base - ref|| / ||ref|| + atol / rms(ref)
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "harness/outcome.hpp"
#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "reference/reference.hpp"

namespace moba {

inline constexpr double kForwardFactor = 2.0;
inline constexpr double kGradientFactor = 3.0;
double tensor_atol(DType dtype);
inline constexpr double kLseAtol = 1e-5;

struct TensorCheck {
    std::string tensor;
    double max_abs_err = 0;        // max |x - ref|
    double rel_l2_err = 0;         // ||x - ref|| / ||ref||
    double baseline_max_abs_err = 0;
    double baseline_rel_l2_err = 0;
    double bound = 0;              // factor * baseline_max_abs_err + atol
    double max_abs_ratio = 0;      // max_abs_err / bound
    double row_ratio = 0;          // worst row: its max error / its row bound (0: no rows judged)
    std::int64_t worst_row = -1;   // that row's index (flat element index / row length)
    double rel_l2_bound = 0;       // factor * baseline_rel_l2_err + atol / rms(ref)
    double rel_l2_ratio = 0;       // rel_l2_err / rel_l2_bound
    double ratio = 0;              // the largest of the three ratios (<= 1 passes)
    std::int64_t nonfinite = 0;    // NaN/Inf count in x (an unwritten, poisoned element is NaN)
    std::int64_t worst_index = -1; // flat index of max |x - ref|
    Outcome outcome = Outcome::passed;
    std::string reason;
};

// `got` is the implementation's tensor, `ref` the truth, `base` the same-precision baseline.
// row_len > 0: the tensor is rows of row_len elements, each judged on its own as well (0: the
// per-row rule is not applied, as for lse).
TensorCheck compare_tensor(std::string tensor, std::span<const float> got,
                           std::span<const double> ref, std::span<const float> base,
                           double factor, double atol, std::size_t row_len = 0);

struct GatingCheck {
    std::int64_t pairs = 0;                // (query token, query head) pairs compared
    std::int64_t mismatches = 0;           // sets differ and the reference has no near-tie there
    std::int64_t near_ties = 0;            // reference boundary gap below the margin
    std::int64_t near_tie_mismatches = 0;  // sets differ at a near-tie (counted, not an error)
    std::int64_t invalid = 0;              // out-of-range, unsorted, missing own block, future
    std::int64_t first_bad_pair = -1;
    Outcome outcome = Outcome::passed;
    std::string reason;
};

// Near-tie margin for one pair: the first-order worst-case fp32 rounding of a block mean over
// Bs tokens and a dot product over D terms, in any summation order (reference/SEMANTICS.md):
// 2 * (D + Bs + 1) * 2^-24 * sum_d |q_d| mean_t |k_td|.
double gating_margin(const Problem& problem, double boundary_magnitude);

GatingCheck compare_gating(const Problem& problem, const Selection& got,
                           const ref::GatingResult& ref);

}  // namespace moba
