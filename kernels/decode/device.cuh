// Device building blocks of split_decode: dtype <-> fp32 slices, the warp's transposed
// reduction, a CTA-wide prefix sum and cp.async. Lanes split the head dim: lane l owns the
// kE = D / 32 consecutive elements [l * kE, l * kE + kE) of every row it touches, so a warp reads
// a row as one contiguous, conflict-free access (256 B at D 128 in bf16).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <cstring>

namespace moba::split_decode::detail {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// ---- dtype <-> fp32, two elements (one 32-bit word) at a time ------------------------------
template <typename T>
struct Pair;
template <>
struct Pair<__half> {
    using type = __half2;
    static __device__ __forceinline__ float2 to_float2(type x) { return __half22float2(x); }
    static __device__ __forceinline__ type from_floats(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
    using type = __nv_bfloat162;
    static __device__ __forceinline__ float2 to_float2(type x) { return __bfloat1622float2(x); }
    static __device__ __forceinline__ type from_floats(float a, float b) {
        return __floats2bfloat162_rn(a, b);
    }
};

template <typename T>
__device__ __forceinline__ float2 word_to_float2(unsigned word) {
    typename Pair<T>::type pair;
    static_assert(sizeof(pair) == sizeof(word), "a pair of 16-bit elements is one word");
    memcpy(&pair, &word, sizeof(word));
    return Pair<T>::to_float2(pair);
}

template <typename T>
__device__ __forceinline__ unsigned float2_to_word(float a, float b) {
    const typename Pair<T>::type pair = Pair<T>::from_floats(a, b);
    unsigned word;
    memcpy(&word, &pair, sizeof(word));
    return word;
}

// kE (2 or 4) elements of T at src (aligned to kE elements) as fp32: one 4- or 8-byte load.
template <typename T, int kE>
__device__ __forceinline__ void load_as_float(const T* src, float (&x)[kE]) {
    static_assert(kE == 2 || kE == 4, "a lane owns 2 (D 64) or 4 (D 128) elements");
    if constexpr (kE == 4) {
        const uint2 w = *reinterpret_cast<const uint2*>(src);
        const float2 a = word_to_float2<T>(w.x);
        const float2 b = word_to_float2<T>(w.y);
        x[0] = a.x, x[1] = a.y, x[2] = b.x, x[3] = b.y;
    } else {
        const float2 a = word_to_float2<T>(*reinterpret_cast<const unsigned*>(src));
        x[0] = a.x, x[1] = a.y;
    }
}

// The same for fp32 rows (block means, partial outputs): one 8- or 16-byte load.
template <int kE>
__device__ __forceinline__ void load_floats(const float* src, float (&x)[kE]) {
    static_assert(kE == 2 || kE == 4, "a lane owns 2 (D 64) or 4 (D 128) elements");
    if constexpr (kE == 4) {
        const float4 v = *reinterpret_cast<const float4*>(src);
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else {
        const float2 v = *reinterpret_cast<const float2*>(src);
        x[0] = v.x, x[1] = v.y;
    }
}

template <int kE>
__device__ __forceinline__ void store_floats(float* dst, const float (&x)[kE]) {
    if constexpr (kE == 4) {
        *reinterpret_cast<float4*>(dst) = make_float4(x[0], x[1], x[2], x[3]);
    } else {
        *reinterpret_cast<float2*>(dst) = make_float2(x[0], x[1]);
    }
}

// kE fp32 values rounded to nearest even into T at dst.
template <typename T, int kE>
__device__ __forceinline__ void store_as(T* dst, const float (&x)[kE]) {
    if constexpr (kE == 4) {
        *reinterpret_cast<uint2*>(dst) =
            make_uint2(float2_to_word<T>(x[0], x[1]), float2_to_word<T>(x[2], x[3]));
    } else {
        *reinterpret_cast<unsigned*>(dst) = float2_to_word<T>(x[0], x[1]);
    }
}

// This lane's share of a dot product: explicit fmaf in element order, so equal inputs give equal
// bits wherever it is inlined.
template <int kE>
__device__ __forceinline__ float lane_dot(const float (&a)[kE], const float (&b)[kE]) {
    float sum = 0.0f;
#pragma unroll
    for (int e = 0; e < kE; ++e) sum = __fmaf_rn(a[e], b[e], sum);
    return sum;
}

// ---- the transposed reduction ------------------------------------------------------------
// v[k] on every lane is a partial sum of total k (k < N); on return lane l holds total
// l >> (5 - log2 N) (N = 8: lanes 4k..4k+3 hold total k). N totals cost N - 1 + 5 - log2 N
// shuffles instead of 5 N. Every total is added up by the same tree (lanes paired by bit 4, then
// 3, ..., then 0) and IEEE addition commutes, so equal partials give equal totals whatever k:
// the gating ranks blocks with bitwise equal means by index, never by rounding.
template <int N>
__device__ __forceinline__ float transpose_reduce(float (&v)[N], int lane) {
    static_assert(N == 2 || N == 4 || N == 8 || N == 16 || N == 32, "N is a power of two <= 32");
    constexpr int kLevels = N == 2 ? 1 : N == 4 ? 2 : N == 8 ? 3 : N == 16 ? 4 : 5;
#pragma unroll
    for (int level = 0; level < kLevels; ++level) {
        const int offset = 16 >> level;
        const int half = N >> (level + 1);
        const bool upper = (lane & offset) != 0;
#pragma unroll
        for (int k = 0; k < half; ++k) {
            // Lanes of the pair keep opposite halves and add the partner's share of them.
            const float send = upper ? v[k] : v[k + half];
            const float keep = upper ? v[k + half] : v[k];
            v[k] = keep + __shfl_xor_sync(kFullMask, send, offset);
        }
    }
    float total = v[0];
#pragma unroll
    for (int offset = 16 >> kLevels; offset >= 1; offset >>= 1)
        total += __shfl_xor_sync(kFullMask, total, offset);
    return total;
}

// ---- CTA-wide exclusive prefix sum in thread order ---------------------------------------
// Every thread of the CTA (kThreads, a multiple of 32) must call it; `scratch` holds kThreads/32
// values. Returns the sum of `value` over the threads before this one; *total gets the CTA sum.
template <int kThreads, typename V>
__device__ __forceinline__ V block_exclusive_scan(V value, V* scratch, V* total) {
    static_assert(kThreads % kWarp == 0, "whole warps");
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int warp = static_cast<int>(threadIdx.x) / kWarp;
    V inclusive = value;
#pragma unroll
    for (int offset = 1; offset < kWarp; offset <<= 1) {
        const V before = __shfl_up_sync(kFullMask, inclusive, offset);
        if (lane >= offset) inclusive += before;
    }
    if (lane == kWarp - 1) scratch[warp] = inclusive;
    __syncthreads();
    V warp_base = 0;
    V sum = 0;
#pragma unroll
    for (int w = 0; w < kThreads / kWarp; ++w) {
        if (w < warp) warp_base += scratch[w];
        sum += scratch[w];
    }
    __syncthreads();  // scratch is free for the next call
    *total = sum;
    return warp_base + inclusive - value;
}

// ---- cp.async (sm_80+): 16 bytes global -> shared, zero-filled when !valid ----------------
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int src_bytes = valid ? 16 : 0;  // 0: no bytes read, the 16 are written as zeros
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Blocks for a grid-stride loop over `items`: at least 1, at most INT_MAX.
inline unsigned grid_for(std::int64_t items, int per_block) {
    const std::int64_t blocks = (items + per_block - 1) / per_block;
    return static_cast<unsigned>(blocks < 1 ? 1 : blocks < INT_MAX ? blocks : INT_MAX);
}

}  // namespace moba::split_decode::detail
