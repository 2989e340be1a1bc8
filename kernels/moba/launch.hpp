// Host helpers every tensor-core MoBA launcher uses (tiled_mma, wgmma, and this folder's own):
// workspace alignment and the size of a persistent grid.
#pragma once

#include <algorithm>
#include <cstddef>

#include <cuda_runtime_api.h>

#include "core/cuda_check.hpp"

namespace moba::sparse::detail {

// Workspace regions start 256-byte aligned.
constexpr std::size_t align_up(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

// CTAs of a persistent grid: as many as are resident at once on the current device.
inline int persistent_ctas(const void* kernel, int threads, std::size_t smem) {
    int device = 0;
    int sms = 0;
    int per_sm = 0;
    MOBA_CUDA_CALL(cudaGetDevice(&device));
    MOBA_CUDA_CALL(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    MOBA_CUDA_CALL(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    return sms * std::max(per_sm, 1);
}

}  // namespace moba::sparse::detail
