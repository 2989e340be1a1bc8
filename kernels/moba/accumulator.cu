// finalize of the MoBA fp32 accumulator (accumulator.hpp) and the forward workspace's carve.
#include "kernels/moba/accumulator.hpp"

#include <algorithm>
#include <cstdint>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/launch.hpp"

namespace moba::sparse {
namespace {

using detail::align_up;

template <typename T>
struct FinalizeParams {
    std::int64_t total;
    int heads_q;
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
    const std::int64_t rows = p.total * p.heads_q;
    const std::int64_t items = rows * (kD / 4);
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < items; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t row = i / (kD / 4);
        const int d = static_cast<int>(i % (kD / 4)) * 4;
        const float2 ml = p.acc_ml[row];
        const float inv = ml.y > 0.0f ? 1.0f / ml.y : 0.0f;
        const float4 o = *reinterpret_cast<const float4*>(p.acc_o + row * kD + d);
        store_pair(p.out + row * kD + d, o.x * inv, o.y * inv);
        store_pair(p.out + row * kD + d + 2, o.z * inv, o.w * inv);
        if (d == 0) {
            const std::int64_t token = row / p.heads_q;
            const int h = static_cast<int>(row % p.heads_q);
            p.lse[h * p.total + token] = (ml.x + log2f(ml.y)) * static_cast<float>(kLn2);
        }
    }
}

}  // namespace

std::size_t accumulator_bytes(const Problem& problem) {
    const auto rows = static_cast<std::size_t>(problem.lse_elems());
    return align_up(rows * static_cast<std::size_t>(problem.head_dim) * sizeof(float)) +
           align_up(rows * sizeof(float2));
}

ForwardWorkspace carve_forward_workspace(const Problem& problem, void* base) {
    auto* bytes = static_cast<unsigned char*>(base);
    const auto rows = static_cast<std::size_t>(problem.lse_elems());
    const std::size_t o_bytes =
        align_up(rows * static_cast<std::size_t>(problem.head_dim) * sizeof(float));
    return {{reinterpret_cast<float*>(bytes), reinterpret_cast<float2*>(bytes + o_bytes)},
            bytes + accumulator_bytes(problem)};
}

void finalize(const Problem& problem, const Accumulator& acc, void* out, float* lse,
              cudaStream_t stream) {
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const FinalizeParams<T> params{problem.total_tokens(), problem.heads_q, acc.o, acc.ml,
                                       static_cast<T*>(out), lse};
        const std::int64_t items = problem.lse_elems() * (kD / 4);
        const int threads = 256;
        const auto blocks =
            static_cast<unsigned>(std::min<std::int64_t>((items + threads - 1) / threads, 1 << 20));
        finalize_kernel<T, kD><<<blocks, threads, 0, stream>>>(params);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::sparse
