// The attention's hot loop (attention.cu runs it): staging a 64-key tile of K and V into shared
// memory, and one warp's online softmax and P.V over its share of a staged tile.
// A warp takes 8 keys per step. Lanes split D (kE = D/32 each: one contiguous, conflict-free
// 256-byte read of a key row per warp at D 128), the transposed reduction turns the 8 lane
// partials into 8 scores (lanes 4k..4k+3 hold key k), then each row's running max and sum, then
// P.V with each key's p broadcast by shuffle. K and V slices are converted to fp32 once per step
// and serve every row. fp32 throughout; the score is scale * (q . k), as the reference forms it.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/decode/device.cuh"
#include "kernels/decode/params.cuh"

namespace moba::split_decode::detail {

constexpr int kTileKeys = 64;
constexpr int kStepKeys = 8;
constexpr int kRowsPerPass = 8;  // most rows every warp of the CTA carries through a pass

// Stage keys [first, first + count) of request r, kv head g into the K and V tiles `ks`, `vs`
// ([kTileKeys, D] each); rows past count are zeros, so masked keys multiply finite values.
template <typename T, int D, int kThreads>
__device__ __forceinline__ void stage_tile(const KeyRows& rows, const T* k, const T* v, int heads_kv,
                                           int r, int g, int first, int count, T* ks, T* vs) {
    constexpr int kChunksPerKey = D * static_cast<int>(sizeof(T)) / 16;
    for (int c = static_cast<int>(threadIdx.x); c < kTileKeys * kChunksPerKey; c += kThreads) {
        const int key = c / kChunksPerKey;
        const int part = c % kChunksPerKey;
        const bool valid = key < count;
        const std::int64_t row = rows(r, valid ? first + key : first);
        const std::int64_t at = (row * heads_kv + g) * D + part * 8;
        cp_async_16(ks + key * D + part * 8, k + at, valid);
        cp_async_16(vs + key * D + part * 8, v + at, valid);
    }
}

// The running softmax of kRows rows over the keys a warp has seen: max score m, this lane's
// key's share of sum exp(s - m) in l (summed over the lanes at the end), and the lane's D slice
// of sum exp(s - m) v in o.
template <int D, int kRows>
struct RowState {
    float o[kRows][D / kWarp];
    float m[kRows];
    float l[kRows];
};

// Steps step0, step0 + step_stride, ... of the staged tile of `count` keys starting at position
// `first`, for kRows rows whose q (fp32, [kRows, D]) is in `qs` and positions in `pos`. Keys
// after a row's position (or past count) get p = 0; steps after the last row are skipped.
// kRows is a compile-time count and the update is branch-free, so the rows' independent
// shuffle and exp chains interleave (a branch per row would serialise them on latency).
template <typename T, int D, int kRows>
__device__ __forceinline__ void consume_tile(const T* ks, const T* vs, const float* qs, int first,
                                             int count, const int (&pos)[kRows], int max_pos,
                                             int step0, int step_stride, float scale, int lane,
                                             RowState<D, kRows>& st) {
    constexpr int kE = D / kWarp;
    const int steps = max_pos < first ? 0 : min((count + kStepKeys - 1) / kStepKeys,
                                               (max_pos - first) / kStepKeys + 1);
    for (int step = step0; step < steps; step += step_stride) {
        const int key = step * kStepKeys + (lane >> 2);  // the key whose score this lane ends with
        float kv[kStepKeys][kE];
#pragma unroll
        for (int k = 0; k < kStepKeys; ++k)
            load_as_float<T, kE>(ks + (step * kStepKeys + k) * D + lane * kE, kv[k]);
        float p_key[kRows];
        float rescale[kRows];
#pragma unroll
        for (int rr = 0; rr < kRows; ++rr) {
            float q[kE];
            load_floats<kE>(qs + rr * D + lane * kE, q);
            float part[kStepKeys];
#pragma unroll
            for (int k = 0; k < kStepKeys; ++k) part[k] = lane_dot<kE>(q, kv[k]);
            float s = transpose_reduce<kStepKeys>(part, lane) * scale;
            if (key >= count || first + key > pos[rr]) s = -INFINITY;
            float step_max = s;  // lanes differing in bits 0-1 hold the same key
#pragma unroll
            for (int offset = 4; offset < kWarp; offset <<= 1)
                step_max = fmaxf(step_max, __shfl_xor_sync(kFullMask, step_max, offset));
            const float m_new = fmaxf(st.m[rr], step_max);
            // While nothing is attended (m_new = -inf) subtract 0, not -inf: p and the rescale
            // of the all-zero l, o come out 0 instead of NaN.
            const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
            rescale[rr] = __expf(st.m[rr] - m_ref);
            p_key[rr] = __expf(s - m_ref);
            st.l[rr] = st.l[rr] * rescale[rr] + p_key[rr];
            st.m[rr] = m_new;
        }
#pragma unroll
        for (int k = 0; k < kStepKeys; ++k)
            load_as_float<T, kE>(vs + (step * kStepKeys + k) * D + lane * kE, kv[k]);
#pragma unroll
        for (int rr = 0; rr < kRows; ++rr) {
#pragma unroll
            for (int e = 0; e < kE; ++e) st.o[rr][e] *= rescale[rr];
#pragma unroll
            for (int k = 0; k < kStepKeys; ++k) {
                const float pk = __shfl_sync(kFullMask, p_key[rr], k * 4);
#pragma unroll
                for (int e = 0; e < kE; ++e) st.o[rr][e] = fmaf(pk, kv[k][e], st.o[rr][e]);
            }
        }
    }
}

}  // namespace moba::split_decode::detail
