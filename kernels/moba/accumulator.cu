// finalize of the MoBA fp32 accumulator (accumulator.hpp) and the forward workspace's carve.
#include "kernels/moba/accumulator.hpp"

#include <algorithm>
#include <cstdint>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/moba/launch.hpp"
#include "kernels/moba/row_stats.hpp"

namespace moba::sparse {
namespace {

using detail::align_up;

template <typename T>
struct FinalizeParams {
    std::int64_t total;
    int heads_q;
    int head0;  // the accumulator's pass: query heads [head0, head0 + heads)
    int heads;
    const float* acc_o;
    const float2* acc_ml;
    T* out;      // [total, Hq, D]
    float* lse;  // [Hq, total]
};

// Two fp32 values rounded to the dtype and written as one 4-byte store.
__device__ __forceinline__ void store_pair(__nv_bfloat16* dst, float lo, float hi) {
    *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(lo, hi);
}
__device__ __forceinline__ void store_pair(__half* dst, float lo, float hi) {
    *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(lo, hi);
}

// One thread per 4 output elements: out = O / l in the dtype; lse once per row.
template <typename T, int kD>
__global__ void finalize_kernel(FinalizeParams<T> p) {
    const std::int64_t rows = p.total * p.heads;
    const std::int64_t items = rows * (kD / 4);
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < items; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t row = i / (kD / 4);  // the accumulator's row
        const int d = static_cast<int>(i % (kD / 4)) * 4;
        const std::int64_t token = row / p.heads;
        const int h = p.head0 + static_cast<int>(row - token * p.heads);
        T* out = p.out + (token * p.heads_q + h) * kD + d;
        const float2 ml = p.acc_ml[row];
        const float inv = ml.y > 0.0f ? 1.0f / ml.y : 0.0f;
        const float4 o = *reinterpret_cast<const float4*>(p.acc_o + row * kD + d);
        store_pair(out, o.x * inv, o.y * inv);
        store_pair(out + 2, o.z * inv, o.w * inv);
        if (d == 0) p.lse[h * p.total + token] = (ml.x + log2f(ml.y)) * static_cast<float>(kLn2);
    }
}

// dq = scale * dq_acc, one thread per 4 elements.
template <typename T, int kD>
__global__ void finalize_dq_kernel(const float* dq_acc, std::int64_t total, int heads_q, int head0, int heads,
                                   float scale, T* dq) {
    const std::int64_t items = total * heads * (kD / 4);
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < items; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t row = i / (kD / 4);  // the accumulator's row
        const int d = static_cast<int>(i % (kD / 4)) * 4;
        const std::int64_t token = row / heads;
        const int h = head0 + static_cast<int>(row - token * heads);
        T* dst = dq + (token * heads_q + h) * kD + d;
        const float4 a = *reinterpret_cast<const float4*>(dq_acc + row * kD + d);
        store_pair(dst, a.x * scale, a.y * scale);
        store_pair(dst + 2, a.z * scale, a.w * scale);
    }
}

unsigned grid_of(std::int64_t items, int threads) {
    return static_cast<unsigned>(std::min<std::int64_t>((items + threads - 1) / threads, 1 << 20));
}

}  // namespace

namespace {

std::size_t rows_of(const Problem& problem, int q_heads) {
    return static_cast<std::size_t>(problem.total_tokens()) * static_cast<std::size_t>(q_heads);
}

std::size_t o_bytes(const Problem& problem, int q_heads) {
    return align_up(rows_of(problem, q_heads) * static_cast<std::size_t>(problem.head_dim) * sizeof(float));
}

}  // namespace

std::size_t accumulator_bytes(const Problem& problem, int q_heads) {
    return o_bytes(problem, q_heads) + align_up(rows_of(problem, q_heads) * sizeof(float2));
}

ForwardWorkspace carve_forward_workspace(const Problem& problem, int q_heads, void* base) {
    auto* bytes = static_cast<unsigned char*>(base);
    return {{reinterpret_cast<float*>(bytes), reinterpret_cast<float2*>(bytes + o_bytes(problem, q_heads)), 0,
             q_heads},
            bytes + accumulator_bytes(problem, q_heads)};
}

void finalize(const Problem& problem, const Accumulator& acc, void* out, float* lse,
              cudaStream_t stream) {
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const FinalizeParams<T> params{problem.total_tokens(), problem.heads_q, acc.head0, acc.heads,
                                       acc.o, acc.ml, static_cast<T*>(out), lse};
        const std::int64_t items = problem.total_tokens() * acc.heads * (kD / 4);
        const int threads = 256;
        finalize_kernel<T, kD><<<grid_of(items, threads), threads, 0, stream>>>(params);
        MOBA_CHECK_LAUNCH();
    });
}

std::size_t dq_accumulator_bytes(const Problem& problem) {
    if (problem.sel_slots() == 1) return 0;  // no past blocks: dq is written directly
    const auto pass_heads = static_cast<std::size_t>(kv_heads_per_pass(problem) * problem.group());
    return align_up(static_cast<std::size_t>(problem.total_tokens()) * pass_heads *
                    static_cast<std::size_t>(problem.head_dim) * sizeof(float));
}

BackwardWorkspace carve_backward_workspace(const Problem& problem, void* base) {
    auto* bytes = static_cast<unsigned char*>(base);
    const std::size_t s = row_stats_bytes(problem);
    const std::size_t a = dq_accumulator_bytes(problem);
    return {reinterpret_cast<float2*>(bytes), a > 0 ? reinterpret_cast<float*>(bytes + s) : nullptr, bytes + s + a};
}

void finalize_dq(const Problem& problem, const float* dq_acc, int head0, int heads, void* dq,
                 cudaStream_t stream) {
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const std::int64_t items = problem.total_tokens() * heads * (kD / 4);
        const int threads = 256;
        finalize_dq_kernel<T, kD><<<grid_of(items, threads), threads, 0, stream>>>(
            dq_acc, problem.total_tokens(), problem.heads_q, head0, heads,
            static_cast<float>(problem.scale()), static_cast<T*>(dq));
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::sparse
