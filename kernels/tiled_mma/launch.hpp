// Host helpers shared by the tiled_mma launchers (forward.cu, backward.cu).
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "harness/cuda_check.hpp"
#include "harness/problem.hpp"

namespace moba::tiled_mma::detail {

// Workspace regions start 256-byte aligned.
constexpr std::size_t align_up(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

// Calls fn(T{}, std::integral_constant<int, D>{}) for the problem's dtype (bf16 or fp16) and
// head dim (64 or 128); the callers have refused everything else.
template <typename Fn>
void dispatch(const Problem& problem, Fn&& fn) {
    auto by_dim = [&](auto tag) {
        if (problem.head_dim == 64) fn(tag, std::integral_constant<int, 64>{});
        else fn(tag, std::integral_constant<int, 128>{});
    };
    if (problem.dtype == DType::bf16) by_dim(__nv_bfloat16{});
    else by_dim(__half{});
}

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

}  // namespace moba::tiled_mma::detail
