// prepare(): the fp32 mean of every full block of every request's cache, per kv head, as a
// server keeps them from prefill (SEMANTICS.md §9 allows a kept mean that equals the mean of the
// block's keys). Only full blocks: a token's past blocks are all full, and a partial block is
// only ever someone's own block, which is never scored.
// Each mean is summed in token order and divided by Bs, so blocks with bitwise equal keys get
// bitwise equal means and the gating sees their scores tie exactly (the `ties` family).
// One thread per (slot, kv head, d): consecutive threads read consecutive d of a key row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/decode/device.cuh"
#include "kernels/decode/launch.hpp"

namespace moba::split_decode::detail {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
struct MeansParams {
    Batch batch;
    KeyRows rows;
    const T* k;
    float* means;      // [slots, Hkv, D]
    std::int64_t slots;  // total_k / Bs
    int head_dim;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) block_means(MeansParams<T> p) {
    const Batch& b = p.batch;
    const int d_count = p.head_dim;
    const std::int64_t count = p.slots * b.heads_kv * d_count;
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         e < count; e += stride) {
        const int d = static_cast<int>(e % d_count);
        const std::int64_t rest = e / d_count;
        const int g = static_cast<int>(rest % b.heads_kv);
        const std::int64_t slot = rest / b.heads_kv;
        // The last request whose first slot is at or before this one owns it, if any does.
        const int r = last_at_most(b.batch, slot, [&](int c) {
            return static_cast<std::int64_t>(b.cu_k[c] / b.block);
        });
        const int blk = static_cast<int>(slot - b.cu_k[r] / b.block);
        const int k_len = b.cu_k[r + 1] - b.cu_k[r];
        if (blk >= k_len / b.block) continue;  // a gap slot between two requests: never read
        const int first = blk * b.block;
        float sum = 0.0f;
#pragma unroll 8
        for (int j = first; j < first + b.block; ++j)
            sum += to_float(p.k[(p.rows(r, j) * b.heads_kv + g) * d_count + d]);
        p.means[e] = sum / static_cast<float>(b.block);
    }
}

}  // namespace

void launch_means(const DecodeArgs& args, const MobaLayout& layout) {
    const Problem& cache = args.cache;
    const std::int64_t slots = cache.total_tokens() / cache.block;
    if (slots == 0) return;  // no request has a full block: nothing will ever be scored
    dispatch_dtype(TensorCoreDTypes{}, cache.dtype, [&](auto tag) {
        using T = decltype(tag);
        const MeansParams<T> p{make_batch(args), make_key_rows(args), static_cast<const T*>(args.k),
                               layout.means.in<float>(args.workspace), slots, cache.head_dim};
        block_means<T><<<grid_for(slots * cache.heads_kv * cache.head_dim, kThreads), kThreads, 0,
                         args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::split_decode::detail
