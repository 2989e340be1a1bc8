// The backward's row statistics (row_stats.hpp).
#include "kernels/moba/row_stats.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>

#include <fmt/format.h>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/launch.hpp"

namespace moba::sparse {
namespace {

template <typename T>
struct RowStatsParams {
    std::int64_t total;
    int heads_q;
    const T* out;       // [total, Hq, D]
    const T* dout;      // [total, Hq, D]
    const float* lse;   // [Hq, total], natural log
    float2* stats;      // [total, Hq]
};

template <typename T>
__device__ __forceinline__ float2 unpack2(std::uint32_t bits);
template <>
__device__ __forceinline__ float2 unpack2<__nv_bfloat16>(std::uint32_t bits) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}
template <>
__device__ __forceinline__ float2 unpack2<__half>(std::uint32_t bits) {
    return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}

// kD / 8 lanes per (token, head) row, 8 elements (16 bytes of out and of dout) each; the
// partial dot products meet in a fixed xor-butterfly, so Delta is deterministic.
template <typename T, int kD>
__global__ void __launch_bounds__(256) row_stats_kernel(RowStatsParams<T> p) {
    constexpr int kLanes = kD / 8;
    const std::int64_t items = p.total * p.heads_q * kLanes;
    const int lane = static_cast<int>(threadIdx.x % 32);
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    // Whole warps iterate together (base is warp-aligned) so the shuffles see every lane.
    for (std::int64_t base =
             static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x - lane;
         base < items; base += stride) {
        const std::int64_t i = base + lane;
        const bool live = i < items;
        float sum = 0.0f;
        if (live) {
            const uint4 o = *reinterpret_cast<const uint4*>(p.out + i * 8);
            const uint4 d = *reinterpret_cast<const uint4*>(p.dout + i * 8);
            const std::uint32_t ow[4] = {o.x, o.y, o.z, o.w};
            const std::uint32_t dw[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 of = unpack2<T>(ow[e]);
                const float2 df = unpack2<T>(dw[e]);
                sum = fmaf(of.x, df.x, sum);
                sum = fmaf(of.y, df.y, sum);
            }
        }
#pragma unroll
        for (int m = 1; m < kLanes; m <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, m);
        if (live && i % kLanes == 0) {
            const std::int64_t row = i / kLanes;
            const std::int64_t token = row / p.heads_q;
            const std::int64_t h = row % p.heads_q;
            p.stats[row] = make_float2(p.lse[h * p.total + token] * static_cast<float>(kLog2e), sum);
        }
    }
}

unsigned grid_for(std::int64_t threads, int per_cta) {
    const std::int64_t ctas = (threads + per_cta - 1) / per_cta;
    return static_cast<unsigned>(std::clamp<std::int64_t>(ctas, 1, 1 << 20));
}

}  // namespace

Support row_stats_can_implement(const Problem& problem) {
    const std::int64_t rows = problem.lse_elems();
    if (rows > INT_MAX)
        return Support::no(fmt::format(
            "backward row statistics: total tokens x query heads {} exceed the int32 row index",
            rows));
    return Support::yes();
}

std::size_t row_stats_bytes(const Problem& problem) {
    return detail::align_up(static_cast<std::size_t>(problem.lse_elems()) * sizeof(float2));
}

void row_stats(const AttentionArgs& args, float2* stats) {
    const Problem& problem = args.problem;
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const RowStatsParams<T> params{problem.total_tokens(),
                                       problem.heads_q,
                                       static_cast<const T*>(args.out),
                                       static_cast<const T*>(args.dout),
                                       args.lse,
                                       stats};
        const int threads = 256;
        row_stats_kernel<T, kD>
            <<<grid_for(problem.lse_elems() * (kD / 8), threads), threads, 0, args.stream>>>(params);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::sparse
