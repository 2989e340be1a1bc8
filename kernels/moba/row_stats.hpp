// The first step of every tensor-core attention backward (tiled_mma's MoBA and dense ones,
// wgmma's MoBA and dense ones): per (token, query head) row, the pair (lse * log2 e, Delta = dout . out) that
// the dQ and dK/dV kernels read to recompute P and form dS = P (dP - Delta). Deterministic: the
// dot product's partial sums meet in a fixed butterfly.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>
#include <vector_types.h>  // float2

#include "kernels/kernel_api.hpp"

namespace moba::sparse {

// Refuses problems whose rows (total tokens x query heads) exceed the int32 row index.
Support row_stats_can_implement(const Problem& problem);

// [total, Hq] float2, 256-byte aligned size.
std::size_t row_stats_bytes(const Problem& problem);

// stats[token * Hq + h] = (lse[h, token] * log2 e, sum_d dout[token, h, d] * out[token, h, d]).
// bf16 / fp16, head dims 64 / 128. Launches on args.stream (reads args.out, args.dout,
// args.lse); throws moba::CudaError for a failed launch, std::invalid_argument for another
// dtype or head dim.
void row_stats(const AttentionArgs& args, float2* stats);

}  // namespace moba::sparse
