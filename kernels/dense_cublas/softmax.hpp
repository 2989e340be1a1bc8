// The row kernels between the GEMMs, one thread block per score row (query i of one head):
//   softmax_rows:       P = softmax(scale * S) over j <= i, 0 beyond; lse = max + log(sum)
//   probability_rows:   P = exp(scale * S - lse) over j <= i, 0 beyond (backward recompute)
//   score_grad_rows:    dS = P * (dP - Delta) over j <= i, Delta = dout_i . out_i, in place of P
// and an fp32 -> dtype conversion for the dk/dv accumulators. P and dS are rounded to the
// dtype, as the GEMMs that read them take dtype operands.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/problem.hpp"

namespace moba::dense_cublas::detail {

// The score rows of one chunk of consecutive query heads of one sequence.
struct ScoreRows {
    int len;                       // L: rows per head, and valid columns per row
    int ld;                        // row stride of scores and probs (elements)
    int heads;                     // heads in the chunk
    std::int64_t head_elems;       // elements between consecutive heads' matrices
    float* scores;                 // [heads, L, ld] fp32: S, or dP in the backward
    void* probs;                   // [heads, L, ld] dtype: P, or dS in the backward
    float* lse;                    // lse of the chunk's first head at the sequence's first token
    std::int64_t lse_head_stride;  // total tokens (lse is [Hq, total])
    float scale;
};

// Rows of out and dout for score_grad_rows: row i of chunk head c at
// base + i * token_stride + c * head_dim (both [total, Hq, D] at the chunk's first head).
struct OutputRows {
    const void* out;
    const void* dout;
    std::int64_t token_stride;  // Hq * D
    int head_dim;
};

void softmax_rows(DType dtype, const ScoreRows& rows, cudaStream_t stream);
void probability_rows(DType dtype, const ScoreRows& rows, cudaStream_t stream);
void score_grad_rows(DType dtype, const ScoreRows& rows, const OutputRows& outputs,
                     cudaStream_t stream);
// dst[e] = round(src[e]) for e < count.
void convert(DType dtype, const float* src, void* dst, std::int64_t count, cudaStream_t stream);

}  // namespace moba::dense_cublas::detail
