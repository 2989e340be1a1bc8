// Backward of tiled_mma (MoBA with a fixed selection) and of tiled_mma_dense (full causal
// attention), on mma.sync tensor cores. Deterministic: no floating-point atomics, every sum in
// a fixed order, so repeated calls give bitwise identical gradients. The design, its cost and
// its limits are in backward.cu's header; the kernels are in backward_kernels.cuh (dQ)
// and backward_dkdv.cuh (dK, dV); the row statistics are kernels/moba/row_stats.hpp's.
// bf16 and fp16, head dims 64 and 128, any Hq/Hkv ratio, varlen batches, any block size.
#pragma once

#include <cstddef>

#include "kernels/kernel_api.hpp"

namespace moba::tiled_mma {

// The attention kernels' limits (dense_can_implement) plus the backward's grid and index
// limits (batch <= 65535, total * Hq <= INT32_MAX, grids within CUDA's x range) and, for
// MoBA, the block lists' limits. The gating's own limits do not apply: the backward reads sel.
Support dense_backward_can_implement(const Problem& problem);
Support backward_can_implement(const Problem& problem);

// Workspace: row statistics [total, Hq] float2 (lse * log2 e, Delta); for MoBA with past-block
// slots (sel_slots > 1) an fp32 dQ accumulator [total, pass heads, D] and the block lists'
// workspace (block_lists.hpp, deterministic lists of 64-row items), both for one head pass
// (kernels/moba/head_passes.hpp). 0 for a refused problem. The MoBA
// size asks cub for its temporary storage size, so it needs a CUDA device.
std::size_t backward_workspace_bytes(const Problem& problem);
std::size_t dense_backward_workspace_bytes(const Problem& problem);

// Read q, k, v, out, lse, dout (and sel for MoBA); write dq, dk, dv. Launch on args.stream,
// check each launch (throw moba::CudaError); throw std::invalid_argument for a refused problem,
// a null workspace (naming the size needed) or, for MoBA with past-block slots, a null sel.
void backward(const AttentionArgs& args);        // MoBA: the selection args.sel, fixed
void dense_backward(const AttentionArgs& args);  // full causal: ignores sel

}  // namespace moba::tiled_mma
