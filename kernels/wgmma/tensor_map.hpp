// Host side: TMA tensor maps over the project's [tokens, heads, D] tensors, as the wgmma
// kernels (and the layout probes) read them: boxes of 64 columns x 1 head x `box_rows` tokens in
// the 128-byte swizzle layout of tile.cuh, zeros for rows past the end of the tensor.
#pragma once

#include <cstdint>

#include <cuda.h>

namespace moba::wgmma::detail {

// 2-byte elements (bf16 or fp16: TMA only moves bits, so the map says bf16 for both).
// Throws std::runtime_error when the driver refuses the map (moba::CudaError when the
// entry point cannot be looked up).
CUtensorMap make_tile_map(const void* base, std::int64_t tokens, int heads, int head_dim, int box_rows);

}  // namespace moba::wgmma::detail
