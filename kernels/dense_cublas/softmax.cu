// Row kernels of the dense cuBLAS path (declared in softmax.hpp). One 256-thread block per
// score row, threads striding over the row's columns (coalesced); fp32 math throughout.
#include <climits>
#include <cmath>
#include <stdexcept>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/dense_cublas/softmax.hpp"

namespace moba::dense_cublas::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ T round_to(float x);
template <>
__device__ __forceinline__ __half round_to<__half>(float x) {
    return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 round_to<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// (max, sum of exp(x - max)) of two parts; an empty part is (-inf, 0).
__device__ __forceinline__ void merge(float& m, float& l, float m2, float l2) {
    const float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return;
    l = l * expf(m - mn) + l2 * expf(m2 - mn);
    m = mn;
}

// Every thread of the block ends with the merged (max, sum), identical bits everywhere
// (lanes merge symmetric pairs, then every thread merges the warps in the same order).
__device__ void block_max_sum(float& m, float& l) {
    __shared__ float warp_m[kWarps];
    __shared__ float warp_l[kWarps];
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
        merge(m, l, __shfl_xor_sync(kFullMask, m, offset), __shfl_xor_sync(kFullMask, l, offset));
    const int warp = threadIdx.x / kWarp;
    if (threadIdx.x % kWarp == 0) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
    __syncthreads();
    m = warp_m[0];
    l = warp_l[0];
    for (int w = 1; w < kWarps; ++w) merge(m, l, warp_m[w], warp_l[w]);
    __syncthreads();  // the shared slots are free again for the next row
}

__device__ float block_sum(float x) {
    __shared__ float warp_x[kWarps];
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
        x += __shfl_xor_sync(kFullMask, x, offset);
    if (threadIdx.x % kWarp == 0) warp_x[threadIdx.x / kWarp] = x;
    __syncthreads();
    x = warp_x[0];
    for (int w = 1; w < kWarps; ++w) x += warp_x[w];
    __syncthreads();
    return x;
}

struct Row {
    int head;  // within the chunk
    int i;     // query (row) within the sequence
    std::int64_t offset;  // of the row in scores and probs
};

__device__ __forceinline__ Row row_at(const ScoreRows& r, std::int64_t row) {
    const int head = static_cast<int>(row / r.len);
    const int i = static_cast<int>(row % r.len);
    return {head, i, head * r.head_elems + static_cast<std::int64_t>(i) * r.ld};
}

__device__ __forceinline__ std::int64_t row_count(const ScoreRows& r) {
    return static_cast<std::int64_t>(r.heads) * r.len;
}

// Writes P over the whole row: exp(scale * s - lse) for j <= i, 0 beyond (the P V and P^T dO
// GEMMs read full rows).
template <typename T>
__device__ __forceinline__ void write_probabilities(const float* s, T* p, int i, int len,
                                                    float scale, float lse) {
    for (int j = threadIdx.x; j < len; j += kThreads)
        p[j] = round_to<T>(j <= i ? expf(scale * s[j] - lse) : 0.0f);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_kernel(ScoreRows r) {
    for (std::int64_t index = blockIdx.x; index < row_count(r); index += gridDim.x) {
        const Row row = row_at(r, index);
        const float* s = r.scores + row.offset;
        // Online max and sum per thread: one expf per element.
        float m = -INFINITY;
        float l = 0.0f;
        for (int j = threadIdx.x; j <= row.i; j += kThreads) {
            const float x = r.scale * s[j];
            if (x > m) {
                l = l * expf(m - x) + 1.0f;
                m = x;
            } else {
                l += expf(x - m);
            }
        }
        block_max_sum(m, l);  // l >= 1: the row holds its own key
        const float lse = m + logf(l);
        write_probabilities(s, static_cast<T*>(r.probs) + row.offset, row.i, r.len, r.scale, lse);
        if (threadIdx.x == 0) r.lse[row.head * r.lse_head_stride + row.i] = lse;
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) probability_kernel(ScoreRows r) {
    for (std::int64_t index = blockIdx.x; index < row_count(r); index += gridDim.x) {
        const Row row = row_at(r, index);
        const float lse = r.lse[row.head * r.lse_head_stride + row.i];
        write_probabilities(r.scores + row.offset, static_cast<T*>(r.probs) + row.offset, row.i,
                            r.len, r.scale, lse);
    }
}

// Entries j > i stay 0 from probability_kernel (P = 0 there, so dS = 0).
template <typename T>
__global__ void __launch_bounds__(kThreads) score_grad_kernel(ScoreRows r, OutputRows o) {
    for (std::int64_t index = blockIdx.x; index < row_count(r); index += gridDim.x) {
        const Row row = row_at(r, index);
        const std::int64_t at = row.i * o.token_stride + static_cast<std::int64_t>(row.head) * o.head_dim;
        const T* out = static_cast<const T*>(o.out) + at;
        const T* dout = static_cast<const T*>(o.dout) + at;
        float part = 0.0f;
        for (int d = threadIdx.x; d < o.head_dim; d += kThreads)
            part = fmaf(to_f32(dout[d]), to_f32(out[d]), part);
        const float delta = block_sum(part);
        const float* dp = r.scores + row.offset;
        T* p = static_cast<T*>(r.probs) + row.offset;
        for (int j = threadIdx.x; j <= row.i; j += kThreads)
            p[j] = round_to<T>(to_f32(p[j]) * (dp[j] - delta));
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) convert_kernel(const float* src, T* dst,
                                                           std::int64_t count) {
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
    for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
         e < count; e += stride)
        dst[e] = round_to<T>(src[e]);
}

unsigned grid_for(std::int64_t blocks) {
    return static_cast<unsigned>(blocks < INT_MAX ? (blocks > 0 ? blocks : 1) : INT_MAX);
}

// The row kernels' instances: bf16 and fp16 (fp32 problems never reach cuBLAS's path).
constexpr DTypes<__nv_bfloat16, __half> kRowTypes{};

}  // namespace

void softmax_rows(DType dtype, const ScoreRows& rows, cudaStream_t stream) {
    dispatch_dtype(kRowTypes, dtype, [&](auto tag) {
        using T = decltype(tag);
        softmax_kernel<T><<<grid_for(static_cast<std::int64_t>(rows.heads) * rows.len), kThreads,
                            0, stream>>>(rows);
        MOBA_CHECK_LAUNCH();
    });
}

void probability_rows(DType dtype, const ScoreRows& rows, cudaStream_t stream) {
    dispatch_dtype(kRowTypes, dtype, [&](auto tag) {
        using T = decltype(tag);
        probability_kernel<T><<<grid_for(static_cast<std::int64_t>(rows.heads) * rows.len),
                                kThreads, 0, stream>>>(rows);
        MOBA_CHECK_LAUNCH();
    });
}

void score_grad_rows(DType dtype, const ScoreRows& rows, const OutputRows& outputs,
                     cudaStream_t stream) {
    dispatch_dtype(kRowTypes, dtype, [&](auto tag) {
        using T = decltype(tag);
        score_grad_kernel<T><<<grid_for(static_cast<std::int64_t>(rows.heads) * rows.len),
                               kThreads, 0, stream>>>(rows, outputs);
        MOBA_CHECK_LAUNCH();
    });
}

void convert(DType dtype, const float* src, void* dst, std::int64_t count, cudaStream_t stream) {
    dispatch_dtype(kRowTypes, dtype, [&](auto tag) {
        using T = decltype(tag);
        convert_kernel<T><<<grid_for((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
            src, static_cast<T*>(dst), count);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::dense_cublas::detail
