// Dense full causal attention through cuBLAS: the "math path" baseline a PyTorch user gets
// without FlashAttention. Per sequence and per chunk of query heads: S = Q K^T as fp32 scores
// [heads, L, L] (batched tensor-core GEMMs), a softmax kernel per row (causal mask, scale,
// lse) writing P rounded to the dtype, then O = P V. The backward recomputes P from lse and
// runs dV = P^T dO, dP = dO V^T, dS = P (dP - Delta), dQ = scale dS K, dK = scale dS^T Q.
// It IGNORES the selection (args.sel): it equals MoBA only at zero sparsity (k >= n).
// bf16 and fp16, head dims that are multiples of 8 up to 256, GQA/MQA, varlen batches; one
// head's L x L scores must fit a 16 GiB cap (L up to about 53K; 64K is refused).
// Cost: every GEMM computes the full L x L square although half of it is masked, and the
// fp32 scores and dtype probabilities make round trips through memory, so it is memory bound.
// Measured on an H100 (bf16, one sequence, 16 heads, D 128; TFLOP/s count causal pairs only):
// 8K fwd 4.75 ms (58 TFLOP/s), bwd 9.49 ms (72); 32K fwd 82.2 ms (53), bwd 152 ms (72).
// Not tried yet: skipping the masked upper triangle with query-row tiles (about half of the
// GEMM work and of the score traffic).
#pragma once

#include <cstddef>

#include "kernels/kernel_api.hpp"

namespace moba::dense_cublas {

constexpr int kMaxHeadDim = 256;

Support can_implement(const Problem& problem);

// Scores and probabilities for one chunk of heads of the longest sequence, plus fp32 dk/dv
// accumulators for one sequence. Forward and backward share it. 0 for a refused problem.
std::size_t workspace_bytes(const Problem& problem);

// Each launches on args.stream; throws moba::CudaError / CublasError on failure and
// std::invalid_argument for a refused problem or a missing workspace.
void forward(const AttentionArgs& args);   // writes out, lse
void backward(const AttentionArgs& args);  // reads out, lse, dout; writes dq, dk, dv

}  // namespace moba::dense_cublas
