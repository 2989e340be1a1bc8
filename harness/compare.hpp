// The agreement rules of SEMANTICS.md §5, applied to one tensor or one selection. With factor
// 2 (forward) or 3 (gradients) and atol the rounding step of the dtype near 0.3
// (FlashAttention's choice: 2^-9 bf16, 2^-12 fp16, 2^-25 fp32; 1e-5 for the fp32 lse):
//   whole tensor:  max|x - ref| <= factor * max|x_base - ref| + atol
//   every region:  max over the region |x - ref| <= factor * (the same on the baseline) + atol,
//                  a region being one head's rows of one tile of kRegionTokens consecutive
//                  tokens (an error confined to a few rows, one head or the routed rows cannot
//                  hide under the bound the largest rows set elsewhere; a single row is no
//                  yardstick: a row's baseline error can be near 0 by chance, SEMANTICS.md §5)
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
    double region_ratio = 0;       // worst region: its max error / its bound (0: none judged)
    std::int64_t worst_region = -1;  // tile * heads + head of that region
    double rel_l2_bound = 0;       // factor * baseline_rel_l2_err + atol / rms(ref)
    double rel_l2_ratio = 0;       // rel_l2_err / rel_l2_bound
    double ratio = 0;              // the largest of the three ratios (<= 1 passes)
    std::int64_t nonfinite = 0;    // NaN/Inf count in x (an unwritten, poisoned element is NaN)
    std::int64_t worst_index = -1; // flat index of max |x - ref|
    Outcome outcome = Outcome::passed;
    std::string reason;
};

inline constexpr std::size_t kRegionTokens = 64;

// How a [tokens, heads, row_len] tensor splits into regions; row_len 0: no region rule (lse).
struct Rows {
    std::size_t row_len = 0;
    std::size_t heads = 1;
    // false: region_ratio is measured and recorded but does not judge (the gradients, for now:
    // SEMANTICS.md §5 says why).
    bool judged = true;
};

// `got` is the implementation's tensor, `ref` the truth, `base` the same-precision baseline.
TensorCheck compare_tensor(std::string tensor, std::span<const float> got,
                           std::span<const double> ref, std::span<const float> base,
                           double factor, double atol, Rows rows = {});

struct GatingCheck {
    std::int64_t pairs = 0;                // (query token, query head) pairs compared
    std::int64_t mismatches = 0;           // sets differ by more than near-tie swaps (an error)
    std::int64_t near_ties = 0;            // reference boundary gap within the margin (> 0)
    std::int64_t exact_ties = 0;           // reference boundary gap exactly 0: the lower index wins
    std::int64_t near_tie_mismatches = 0;  // sets differ only by near-tie swaps (counted, not an error)
    // Judged with BlockMeans::rounded (SPEC.md §2.7): sets that differ, beyond near-tie swaps,
    // only as block means rounded to the dtype explain (counted apart, not an error).
    bool rounded_means = false;
    std::int64_t rounding_mismatches = 0;
    std::int64_t tie_violations = 0;       // of the mismatches: an exact tie given to the higher index
    std::int64_t invalid = 0;              // out-of-range, unsorted, missing own block, future
    std::int64_t first_bad_pair = -1;
    Outcome outcome = Outcome::passed;
    std::string reason;
};

// How far an fp32-class gating's score of one block may lie from the float64 one
// (SEMANTICS.md §2, "Near ties"): with u = 2^-24, lambda = 8, M = sum_d |q_d| mean_t |k_td| and
// N = sum_d |q_d kbar_d|,
//   e = lambda u (sqrt(Bs) M + sqrt(D) N) + rho N,
// the block mean's fp32 sum and the dot product's fp32 sum (Higham and Mary's probabilistic
// bound: exceeded with probability below 2 exp(-lambda^2 / 2) ~ 1e-14 per sum), plus rho, the
// relative precision a block mean may be held to: two terms of the input dtype (u_dtype^2:
// 2^-16 bf16, 2^-22 fp16), or fp32 itself (2^-24).
double gating_score_error(const Problem& problem, double magnitude, double abs_score);
// The near-tie margin of the boundary pair: the two blocks' errors added, each taken at the
// pair's larger magnitudes.
double gating_margin(const Problem& problem, double boundary_magnitude, double boundary_abs_score);

// Judges got against the float64 reference. A pair whose set differs is excused (a near-tie
// mismatch) only when every block it took instead of a reference block scores below that block
// by more than 0 and at most the two blocks' errors; an exact tie must go to the lower index.
// `inputs` are the ones gating ran on (the scores of the differing blocks are recomputed).
// With rounded_means (an implementation that declares BlockMeans::rounded, SPEC.md §2.7), a
// pair whose set differs beyond near-tie swaps is counted in rounding_mismatches instead of
// mismatches when, with every block mean rounded to the dtype before the float64 product, each
// block it took scores no lower than each reference block it left out, up to the two blocks'
// score errors.
GatingCheck compare_gating(const Problem& problem, const Selection& got,
                           const ref::GatingResult& ref, const HostInputs& inputs, bool rounded_means = false);
// The same on sampled query rows (`moba bench`): got [T, Hq, slots] holds the implementation's
// selection rows of rows.tokens, ref = ref::gating_rows(problem, rows); the scores of differing
// blocks are recomputed from rows.q_rows and *rows.k. `pairs` counts (row, head) pairs checked;
// first_bad_pair is r * Hq + h, the reason names the token.
GatingCheck compare_gating_rows(const Problem& problem, const Selection& got,
                                const ref::GatingResult& ref, const ref::RowInputs& rows,
                                bool rounded_means = false);

}  // namespace moba
