// Naive GPU MoBA: the plain, obviously-right GPU reference for shapes too large for the CPU.
// fp32 math on CUDA cores, one warp per (query, head) for the forward and dq, one warp per
// (key, kv head) for dk/dv (gathering, no atomics, so every output is deterministic).
// Any head dim up to 256, any Hq/Hkv ratio, varlen batches; inputs fp32, fp16 or bf16.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_api.hpp"

namespace moba::naive {

constexpr int kMaxHeadDim = 256;

Support can_implement(const Problem& problem);

std::size_t gating_workspace_bytes(const Problem& problem);
std::size_t attention_workspace_bytes(const Problem& problem);

// Each launches on args.stream and checks the launch (throws moba::CudaError on failure).
void gating(const GatingArgs& args);
void forward(const AttentionArgs& args);   // writes out, lse
void backward(const AttentionArgs& args);  // reads out, lse, dout; writes dq, dk, dv

// The same-precision baseline of SEMANTICS.md §5 on the GPU (the yardstick of `--reference gpu`):
// the same kernels, but P rounded to the dtype before its product with V (forward: a second
// pass with the row's final lse) or with dO, and dS rounded before its products with K and Q,
// as the CPU baseline (reference/baseline.cpp) does. Not registered: not an implementation.
void baseline_forward(const AttentionArgs& args);
void baseline_backward(const AttentionArgs& args);

// naive_dense (dense.cu): full causal attention whatever args.sel holds (ignored).
std::size_t dense_workspace_bytes(const Problem& problem);
void dense_forward(const AttentionArgs& args);
void dense_backward(const AttentionArgs& args);

// Decode (decode.cu, SEMANTICS.md §9): one step over a KV cache, packed or paged (DecodeArgs).
// The plain version: every block mean is recomputed from k on every step (no prepare, nothing kept).
std::size_t decode_workspace_bytes(const Problem& cache, std::int64_t total_q);
void decode(const DecodeArgs& args);

}  // namespace moba::naive
