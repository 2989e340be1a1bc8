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
    // From k [total, Hkv, D] alone: only score(q, ...) may be called.
    BlockScorer(const Problem& problem, const std::vector<float>& k);
    ~BlockScorer();
    BlockScorer(const BlockScorer&) = delete;
    BlockScorer& operator=(const BlockScorer&) = delete;
    // Local block j of the sequence of packed token t, query head h.
    BlockScore score(std::int64_t token, int head, int block) const;
    // The same for the query row q [D] of that (token, head).
    BlockScore score(const float* q, std::int64_t token, int head, int block) const;

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

// Gating of sampled query rows only (the tokens, q rows and k of RowInputs; v and sel_rows
// unused): selection [T, Hq, slots] and the boundary data [T, Hq], row r bitwise row tokens[r]
// of gating's. Block means once, then every past block of each row scored in float64
// (gating_exhaustive's path). Throws std::invalid_argument on a size mismatch or a token
// outside the problem.
struct RowInputs;
GatingResult gating_rows(const Problem& problem, const RowInputs& rows);

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

// ---- Backward of sampled rows (SEMANTICS.md §5.3) -------------------------------------------
// The row inputs of a backward: the rows' forward inputs and dout of the same tokens.
struct BackwardRowInputs {
    RowInputs rows;
    std::vector<float> dout_rows;  // [T, Hq, D]
};
// float64 dq of the rows' tokens [T, Hq, D]: row r is row tokens[r] of attention_backward's dq
// (bitwise; full causal when sel_rows is empty: of attention_backward with full_selection).
// Each (row, head) takes its lse and Delta from its own float64 forward, as that function does.
std::vector<double> backward_query_rows(const Problem& problem, const BackwardRowInputs& inputs);
// dk, dv [K, Hkv, D] of sampled key tokens.
struct KeyGradients {
    std::vector<double> dk, dv;
};
// float64 dk, dv of the key tokens `keys` (global packed indices, any order): row m is row
// keys[m] of attention_backward's dk, dv (bitwise). Every (query token, head) that attends a key
// contributes, so `queries` must hold every query token that attends one of the keys with some
// head (a token of the key's sequence at or after it whose selection holds the key's block;
// rows that attend none are ignored), each once: tokens repeated, or a key whose own token is
// missing (its own row always attends it), are refused with std::invalid_argument. Only the
// (row, head) pairs that attend a key run their forward (for lse and Delta).
KeyGradients backward_key_rows(const Problem& problem, const BackwardRowInputs& queries,
                               const std::vector<std::int64_t>& keys);

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
// The baseline's dq of the rows [T, Hq, D], bitwise the rows of baseline_backward's dq.
std::vector<float> baseline_backward_query_rows(const Problem& problem,
                                                const BackwardRowInputs& inputs);
// The baseline's dk, dv [K, Hkv, D] of the key tokens, bitwise the rows of baseline_backward's;
// `queries` as for backward_key_rows.
struct BaselineKeyGradients {
    std::vector<float> dk, dv;
};
BaselineKeyGradients baseline_backward_key_rows(const Problem& problem,
                                                const BackwardRowInputs& queries,
                                                const std::vector<std::int64_t>& keys);
// Gating as a plain fp32 implementation computes it (fp32 block means and scores).
Selection baseline_gating(const Problem& problem, const HostInputs& inputs);

}  // namespace moba::ref
