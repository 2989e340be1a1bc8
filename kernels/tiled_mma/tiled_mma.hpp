// tiled_mma: MoBA on tensor cores with warp-level mma.sync (FlashAttention-2 style), and the
// same attention core with every block selected as the project's own dense causal baseline.
//   MoBA forward = own-block causal pass (writes an fp32 accumulator) + one wave per past-block
//   slot over the inverse block lists (each (row, block) pair computed once, GQA groups sharing
//   K/V loads) + finalize. Gating, block lists and the accumulator are kernels/moba/'s; the
// backward is backward.hpp's. bf16 and fp16, head dims 64 and 128, any Hq/Hkv ratio, varlen
// batches.
#pragma once

#include <cstddef>

#include "kernels/kernel_api.hpp"

namespace moba::tiled_mma {

constexpr int kMaxHeadDim = 128;

// The attention kernels' own limits (dtype, head dim); dense needs nothing more.
Support dense_can_implement(const Problem& problem);
// Adds the gating's and the block lists' limits.
Support can_implement(const Problem& problem);

// fp32 accumulator [total, Hq, D + 2] plus the block lists' workspace.
std::size_t attention_workspace_bytes(const Problem& problem);

// Each launches on args.stream and checks its launches (throws moba::CudaError).
void forward(const AttentionArgs& args);        // MoBA: reads sel, writes out and lse
void dense_forward(const AttentionArgs& args);  // full causal: ignores sel

}  // namespace moba::tiled_mma
