// The GEMM operands of one head set (plan.hpp) of one sequence, and the score rows of one
// head chunk: where each matrix starts, its leading dimension and its batch stride.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/dense_cublas/gemm.hpp"
#include "kernels/dense_cublas/plan.hpp"
#include "kernels/dense_cublas/softmax.hpp"
#include "kernels/kernel_api.hpp"

namespace moba::dense_cublas::detail {

// Head `head` of the tokens from `start` of a row-major [tokens, heads, D] tensor: a
// column-major D x L matrix with ld = heads * D. Batch entries step `step` heads.
template <typename Ptr>
Strided<Ptr> token_rows(Ptr base, cudaDataType_t type, std::size_t elem_bytes, int heads,
                        int head_dim, std::int64_t start, int head, int step) {
    using Byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const char,
                                    char>;
    const std::int64_t offset = (start * heads + head) * static_cast<std::int64_t>(head_dim);
    return {static_cast<Byte*>(base) + offset * static_cast<std::int64_t>(elem_bytes), type,
            heads * head_dim, static_cast<std::int64_t>(step) * head_dim};
}

// Chunk head `slot`'s row-major L x ld matrix, i.e. the column-major transpose (ld = ld):
// column i is query row i. Batch entries step `step` slots.
template <typename Ptr>
Strided<Ptr> square(Ptr base, cudaDataType_t type, std::size_t elem_bytes,
                    const ScoreRows& rows, int slot, int step) {
    using Byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const char,
                                    char>;
    const std::int64_t offset = slot * rows.head_elems;
    return {static_cast<Byte*>(base) + offset * static_cast<std::int64_t>(elem_bytes), type,
            rows.ld, step * rows.head_elems};
}

// What one sequence's GEMMs need: the problem, the sequence, the element type.
struct Sequence {
    const Problem& problem;
    std::int64_t start;  // first packed token
    int len;
    cudaDataType_t type;
    std::size_t elem_bytes;

    // Query-side tensors [total, Hq, D]: q, out, dout, dq; heads of a set step by the group.
    template <typename Ptr>
    Strided<Ptr> query_heads(Ptr base, const HeadSet& set) const {
        return token_rows(base, type, elem_bytes, problem.heads_q, problem.head_dim, start,
                          set.first, problem.group());
    }
    // Key-side tensors [total, Hkv, D]: k, v; the set's kv heads are consecutive.
    Operand kv_heads(const void* base, const HeadSet& set) const {
        return token_rows(base, type, elem_bytes, problem.heads_kv, problem.head_dim, start,
                          set.first / problem.group(), 1);
    }
    // The fp32 dk/dv accumulators [L, Hkv, D] of this sequence.
    Output accumulator(float* base, const HeadSet& set) const {
        return token_rows(static_cast<void*>(base), CUDA_R_32F, sizeof(float), problem.heads_kv,
                          problem.head_dim, 0, set.first / problem.group(), 1);
    }
};

// Score rows of chunk [h0, h1) in the workspace: fp32 scores first, dtype probabilities next.
inline ScoreRows score_rows(const AttentionArgs& args, const Sequence& seq, int h0, int h1) {
    ScoreRows rows{};
    rows.len = seq.len;
    rows.ld = score_ld(seq.len);
    rows.heads = h1 - h0;
    rows.head_elems = score_elems(seq.len);
    rows.scores = static_cast<float*>(args.workspace);
    rows.probs = rows.scores + rows.heads * rows.head_elems;
    rows.lse = args.lse + h0 * seq.problem.total_tokens() + seq.start;
    rows.lse_head_stride = seq.problem.total_tokens();
    rows.scale = static_cast<float>(seq.problem.scale());
    return rows;
}

// The set's score matrices (fp32) and probability matrices (dtype) in the chunk starting at h0.
inline Output scores_of(const ScoreRows& rows, const Sequence& seq, const HeadSet& set, int h0) {
    return square(static_cast<void*>(rows.scores), CUDA_R_32F, sizeof(float), rows,
                  set.first - h0, seq.problem.group());
}
inline Operand probs_of(const ScoreRows& rows, const Sequence& seq, const HeadSet& set, int h0) {
    return square(static_cast<const void*>(rows.probs), seq.type, seq.elem_bytes, rows,
                  set.first - h0, seq.problem.group());
}

}  // namespace moba::dense_cublas::detail
