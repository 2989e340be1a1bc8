// The three forward kernels of tiled_mma, built on attention_tile.cuh:
//   causal_tile:  one CTA per (query tile, query head, sequence) over keys up to the diagonal.
//                 Dense mode: keys from 0, writes out and lse (the tiled_mma_dense baseline).
//                 Own-block mode: keys from the row's own MoBA block start, writes the fp32
//                 accumulator (O unnormalised, m, l) that the sparse waves merge into.
//   sparse_wave:  persistent CTAs over the work items of one wave (block_lists.hpp): each item
//                 is up to kRows (token, head) rows of one (kv block, kv head) list. The rows of
//                 every head of the kv group that chose the block share one K/V stream, and
//                 the work is exactly the selected (row, block) pairs: nothing is computed for
//                 a block a row did not choose. Wave t holds each row's t-th past block, so a
//                 row appears at most once per wave and merges into its accumulator without
//                 atomics, in a fixed order (deterministic).
//   The accumulator's finalize (out = O / l, lse) is kernels/moba/accumulator.hpp's.
#pragma once

#include <cstdint>

#include "core/constants.hpp"
#include "kernels/tiled_mma/attention_tile.cuh"
#include "kernels/moba/blocks.cuh"
#include "kernels/moba/wave_items.cuh"

namespace moba::tiled_mma::detail {

struct ForwardShape {
    int batch;
    int heads_q;
    int heads_kv;
    int group;
    int block;       // MoBA block size
    std::int64_t total;
    float scale_log2;  // softmax scale * log2(e)
};

template <typename T>
struct ForwardParams {
    ForwardShape s;
    const std::int32_t* cu;
    const T* q;
    const T* k;
    const T* v;
    T* out;           // dense mode
    float* lse;       // dense mode, [Hq, total]
    float* acc_o;     // MoBA: [total, Hq, D] fp32, unnormalised
    float2* acc_ml;   // MoBA: [total, Hq] (m, l)
};

// Writes the thread's rows: dense mode normalises into out/lse, otherwise the raw
// accumulator goes to acc_o/acc_ml. row_id = token * Hq + h, or -1 for a padding row.
template <typename T, int kD, int kM, bool kDense>
__device__ __forceinline__ void store_rows(const ForwardParams<T>& p, const RowAccum<kD, kM>& acc,
                                           const std::int64_t (&row_id)[2 * kM]) {
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int e = 0; e < 2 * kM; ++e) {
        const int i = e / 2;
        const int r = e % 2;
        if (row_id[e] < 0) continue;
        if constexpr (kDense) {
            const float inv = acc.l[e] > 0.0f ? 1.0f / acc.l[e] : 0.0f;
            T* dst = p.out + row_id[e] * kD;
#pragma unroll
            for (int j = 0; j < kD / 8; ++j)
                store_pair(dst + 8 * j + 2 * t, acc.o[i][j][2 * r] * inv, acc.o[i][j][2 * r + 1] * inv);
            if (t == 0) {
                const std::int64_t token = row_id[e] / p.s.heads_q;
                const int h = static_cast<int>(row_id[e] % p.s.heads_q);
                p.lse[h * p.s.total + token] = (acc.m[e] + log2f(acc.l[e])) * static_cast<float>(kLn2);
            }
        } else {
            float* dst = p.acc_o + row_id[e] * kD;
#pragma unroll
            for (int j = 0; j < kD / 8; ++j)
                store_pair(dst + 8 * j + 2 * t, acc.o[i][j][2 * r], acc.o[i][j][2 * r + 1]);
            if (t == 0) p.acc_ml[row_id[e]] = make_float2(acc.m[e], acc.l[e]);
        }
    }
}

template <typename T, int kD, int kWarps, int kM, bool kDense>
__global__ void __launch_bounds__(Tile<T, kD, kWarps, kM>::kThreads)
    causal_tile(ForwardParams<T> p, int max_tiles) {
    using C = Tile<T, kD, kWarps, kM>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto* q_offset = reinterpret_cast<std::int64_t*>(smem + C::kQElems + 4 * C::kKVElems);

    const ForwardShape& s = p.s;
    const int b = blockIdx.z;
    const int h = blockIdx.y;
    const int tile = max_tiles - 1 - static_cast<int>(blockIdx.x);  // long tiles launch first
    const std::int64_t start = p.cu[b];
    const int len = p.cu[b + 1] - p.cu[b];
    const int q0 = tile * C::kRows;
    if (q0 >= len) return;
    const int hk = h / s.group;
    // Keys from key_base: 0 for dense, else the own block of the tile's first row.
    const int key_base = kDense ? 0 : q0 / s.block * s.block;
    const int q_end = min(q0 + C::kRows, len);

    for (int r = threadIdx.x; r < C::kRows; r += C::kThreads)
        q_offset[r] = q0 + r < len ? ((start + q0 + r) * s.heads_q + h) * kD : -1;
    __syncthreads();
    load_q_rows<T, kD, kWarps, kM>(smem, p.q, q_offset);
    commit_copies();

    int lo[2 * kM];
    int hi[2 * kM];
#pragma unroll
    for (int e = 0; e < 2 * kM; ++e) {
        const int pos = q0 + accum_row<kM>(e);
        lo[e] = (kDense ? 0 : pos / s.block * s.block) - key_base;
        hi[e] = pos - key_base;
    }
    const KeyRange<T> keys{p.k + (start + key_base) * s.heads_kv * kD + hk * kD,
                           p.v + (start + key_base) * s.heads_kv * kD + hk * kD,
                           static_cast<std::int64_t>(s.heads_kv) * kD,
                           q_end - key_base,
                           (kDense ? 0 : (q_end - 1) / s.block * s.block) - key_base,
                           q0 - key_base};
    RowAccum<kD, kM> acc;
    attend<T, kD, kWarps, kM>(smem, keys, lo, hi, s.scale_log2, acc);
    std::int64_t row_id[2 * kM];  // computed late: registers are scarce inside attend()
#pragma unroll
    for (int e = 0; e < 2 * kM; ++e) {
        const int pos = q0 + accum_row<kM>(e);
        row_id[e] = pos < len ? (start + pos) * s.heads_q + h : -1;
    }
    store_rows<T, kD, kM, kDense>(p, acc, row_id);
}

template <typename T, int kD, int kWarps, int kM>
__global__ void __launch_bounds__(Tile<T, kD, kWarps, kM>::kThreads)
    sparse_wave(ForwardParams<T> p, sparse::detail::WaveWork w) {
    using C = Tile<T, kD, kWarps, kM>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto* q_offset = reinterpret_cast<std::int64_t*>(smem + C::kQElems + 4 * C::kKVElems);
    const ForwardShape& s = p.s;
    const int t = threadIdx.x % 4;
    const int first = w.wave_items[w.wave];
    const int last = w.wave_items[w.wave + 1];

    for (int item = first + static_cast<int>(blockIdx.x); item < last;
         item += static_cast<int>(gridDim.x)) {
        const sparse::detail::WaveItem it = sparse::detail::decode_item<C::kRows>(w, item, p.cu, s.batch, s.block);
        const int hk = it.hk;
        const std::int64_t key_start = it.key_start;

        __syncthreads();  // the previous item's epilogue has read q_offset
        sparse::detail::item_row_offsets<C::kRows, C::kThreads, kD>(q_offset, w, it, s.group, s.heads_q,
                                                                   static_cast<int>(threadIdx.x));
        __syncthreads();
        load_q_rows<T, kD, kWarps, kM>(smem, p.q, q_offset);
        commit_copies();
        // The merge below reads each row's fp32 accumulator (512 B at D 128) after the block's
        // key tiles are done; ask L2 for it now so the read overlaps the MMAs.
        for (int idx = threadIdx.x; idx < C::kRows * (kD / 32); idx += C::kThreads) {
            const std::int64_t off = q_offset[idx / (kD / 32)];
            if (off >= 0) prefetch_l2(p.acc_o + off + (idx % (kD / 32)) * 32);
        }

        // A past block is complete and wholly before every listed row: no causal mask.
        int lo[2 * kM];
        int hi[2 * kM];
#pragma unroll
        for (int e = 0; e < 2 * kM; ++e) {
            lo[e] = 0;
            hi[e] = s.block - 1;
        }
        const KeyRange<T> keys{p.k + (key_start * s.heads_kv + hk) * kD,
                               p.v + (key_start * s.heads_kv + hk) * kD,
                               static_cast<std::int64_t>(s.heads_kv) * kD, s.block, 0, s.block - 1};
        RowAccum<kD, kM> acc;
        attend<T, kD, kWarps, kM>(smem, keys, lo, hi, s.scale_log2, acc);

        // Merge into the row's accumulator: m = max, both sides rescaled to it.
#pragma unroll
        for (int e = 0; e < 2 * kM; ++e) {
            const int i = e / 2;
            const int r = e % 2;
            const std::int64_t off = q_offset[accum_row<kM>(e)];
            if (off < 0) continue;
            const std::int64_t row_id = off / kD;
            const float2 ml = p.acc_ml[row_id];
            const float m = fmaxf(ml.x, acc.m[e]);
            const float ca = exp2f(ml.x - m);
            const float cb = exp2f(acc.m[e] - m);
            float* dst = p.acc_o + off;
#pragma unroll
            for (int j = 0; j < kD / 8; ++j) {
                float2* cell = reinterpret_cast<float2*>(dst + 8 * j + 2 * t);
                const float2 old = *cell;
                *cell = make_float2(old.x * ca + acc.o[i][j][2 * r] * cb,
                                    old.y * ca + acc.o[i][j][2 * r + 1] * cb);
            }
            // Every lane of the quad has read ml before lane 0 writes it (quads skip padding
            // rows together, so only the quad's own lanes synchronise).
            __syncwarp(0xfu << (threadIdx.x % 32 & ~3));
            if (t == 0) p.acc_ml[row_id] = make_float2(m, ml.y * ca + acc.l[e] * cb);
        }
    }
}

}  // namespace moba::tiled_mma::detail
