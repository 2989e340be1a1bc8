// The float64 CPU reference (the truth) and the same-precision baseline (the yardstick).
// Shares no code with the kernels: masks, gating and softmax are computed here in their
// own plain way. Semantics: reference/SEMANTICS.md.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "reference/results.hpp"

namespace moba::ref {

// ---- Gating (SEMANTICS.md §2) in float64 ----------------------------------------------------------
struct GatingResult {
    Selection selection;  // [total, Hq, slots]
    // Per (query token, query head) [total, Hq]: score of the k-th selected block minus
    // score of the best unselected eligible (finite-score) block; +inf when there is no
    // such competitor or the k-th is the forced own block.
    std::vector<double> boundary_gap;
    // Per (query token, query head) [total, Hq]: max over the two blocks at the boundary of
    // sum_d |q_d| * mean_t |k_td|, the magnitude that bounds an fp32 score's rounding error.
    // 0 where boundary_gap is +inf. Together with boundary_abs_score it gives the near-tie
    // margin of SEMANTICS.md §2 (harness/compare.hpp, gating_margin).
    std::vector<double> boundary_magnitude;
    // Per (query token, query head) [total, Hq]: max over the same two blocks of
    // sum_d |q_d * kbar_d|, the magnitude of the dot product's own rounding. 0 likewise.
    std::vector<double> boundary_abs_score;
};

// float64 scores of single (query, head, block) triples, with the two magnitudes an fp32 score's
// rounding scales with: for judging a selection that differs from the reference's by blocks
// other than the boundary pair (harness/compare.cpp). Computes the block means once.
struct BlockScore {
    double score = 0;      // q . kbar, as gating computes it
    double magnitude = 0;  // sum_d |q_d| mean_t |k_td|
    double abs_score = 0;  // sum_d |q_d kbar_d|
};
class BlockScorer {
public:
    BlockScorer(const Problem& problem, const HostInputs& inputs);
    ~BlockScorer();
    BlockScorer(const BlockScorer&) = delete;
    BlockScorer& operator=(const BlockScorer&) = delete;
    // Local block j of the sequence of packed token t, query head h.
    BlockScore score(std::int64_t token, int head, int block) const;

private:
    struct State;
    State* state_;
};
// Scores every past block in fp32 first and rescores in float64 only the blocks a rigorous
// error bound cannot rule out (SEMANTICS.md §2, "How the float64 gating is computed fast");
// bitwise the result of gating_exhaustive.
GatingResult gating(const Problem& problem, const HostInputs& inputs);
// The plain definition: a float64 score for every (query, head, past block). The yardstick
// gating is tested against; cost Hq * D * sum_i b(i) double multiply-adds.
GatingResult gating_exhaustive(const Problem& problem, const HostInputs& inputs);

// Every block up to the query's own one (what k >= n selects): MoBA's zero-sparsity selection.
Selection full_selection(const Problem& problem);

// ---- Attention given a selection, float64 (Forward, Gradients: results.hpp) --------------
Forward attention_forward(const Problem& problem, const HostInputs& inputs, const Selection& sel);
Gradients attention_backward(const Problem& problem, const HostInputs& inputs,
                             const Selection& sel);

// ---- Full causal attention, float64, written independently of the selection path ---------
Forward full_attention_forward(const Problem& problem, const HostInputs& inputs);
Gradients full_attention_backward(const Problem& problem, const HostInputs& inputs);

// ---- Forward of a subset of query rows (benchmarks too large for a full pass) -------------
// Query tokens (global packed indices, any order, no duplicates required) whose rows are
// computed, with their inputs: q_rows [T, Hq, D] holds q of exactly those tokens; k, v are the
// full [total, Hkv, D] tensors; sel_rows [T, Hq, slots] the selection rows of those tokens, or
// empty (slots == 0) for full causal attention.
struct RowInputs {
    std::vector<std::int64_t> tokens;
    std::vector<float> q_rows;
    const std::vector<float>* k = nullptr;
    const std::vector<float>* v = nullptr;
    Selection sel_rows;
};
// float64: out [T, Hq, D], lse [Hq, T] (same conventions as attention_forward /
// full_attention_forward).
// Row r equals row tokens[r] of attention_forward (bitwise) or, when sel_rows is empty, of
// full_attention_forward (to rounding). Throws std::invalid_argument on a size mismatch, a
// token outside [0, total), a null k / v, or a malformed selection row (as attention_forward).
// Cost: the rows' attended keys times D; k, v are read in place.
Forward forward_rows(const Problem& problem, const RowInputs& rows);

// ---- Same-precision baseline (SEMANTICS.md §5) ---------------------------------------------------
// What a plain low-precision implementation computes: fp32 scores from the rounded inputs,
// probabilities rounded to the dtype before the product with V, outputs rounded to the dtype.
// For DType::f32 no rounding is applied beyond fp32 arithmetic.
ForwardOutput baseline_forward(const Problem& problem, const HostInputs& inputs,
                               const Selection& sel);
GradientOutput baseline_backward(const Problem& problem, const HostInputs& inputs,
                                 const Selection& sel);
// The same-precision baseline of those rows (as baseline_forward, with the full-causal case
// when sel_rows is empty): bitwise the rows of baseline_forward given the same selection
// (full_selection for the full-causal case). out [T, Hq, D], lse [Hq, T].
ForwardOutput baseline_forward_rows(const Problem& problem, const RowInputs& rows);
// Gating as a plain fp32 implementation computes it (fp32 block means and scores).
Selection baseline_gating(const Problem& problem, const HostInputs& inputs);

}  // namespace moba::ref
