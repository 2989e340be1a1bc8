// Fused MoBA gating of both tensor-core backends (SEMANTICS.md §2): block means, then mma.sync
// scores of every query row against its past block means with a running top-(k-1) on chip. Writes the
// same selection as the naive gating: sel [total, Hq, sel_slots] int32, ascending, -1 padding.
// bf16 and fp16 inputs, head dims 64 and 128, any Hq/Hkv ratio, varlen batches, any k.
// The design, its cost and its limits are in gating.cu's header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_api.hpp"

namespace moba::sparse {

// How gating tiles a problem; a pure function of the shape (host only, no CUDA calls).
struct GatingPlan {
    // The selection kernel: top8 keeps each row's list of up to 8 past blocks in registers (12
    // warps per CTA); top16 / top64 keep lists of up to 16 / 64 in shared memory (8 / 4 warps
    // per CTA); passes is the warp-per-row fallback for k > 65.
    enum class Select { top8, top16, top64, passes };
    Select select = Select::top8;
    int rows = 0;              // (query token, query head) rows per CTA: 32 per warp
    int tile_tokens = 0;       // query tokens per CTA
    int tile_heads = 0;        // query heads per CTA: all of a kv head's group, or a chunk of it
    int head_chunks = 0;       // CTAs side by side over one kv head's group
    std::int64_t tiles = 0;    // query tiles over the packed batch (gap tiles included)
};

// Refuses fp32, head dims other than 64 and 128, and grids beyond CUDA's limits.
Support gating_can_implement(const Problem& problem);

// Requires a valid problem (throws std::invalid_argument otherwise).
GatingPlan plan_gating(const Problem& problem);

// The block means split into two terms in the input dtype, hi and lo, each
// [Hkv, total/Bs + B, D]: 4 * Hkv * D * (total/Bs + B) bytes. 0 for a refused problem.
std::size_t gating_workspace_bytes(const Problem& problem);

// Launches on args.stream, checks each launch (throws moba::CudaError) and throws
// std::invalid_argument for a refused problem, a missing workspace or misaligned q/k (q needs
// 4-byte, k 16-byte alignment).
void gating(const GatingArgs& args);

}  // namespace moba::sparse
