// The MoBA forward's sparse-wave kernel on Hopper wgmma: persistent CTAs over the work items of
// one wave of tiled_mma's inverse block lists (block_lists.hpp, wave_items.cuh). An item is up to
// 128 (token, query head) rows, any heads of one kv group, that chose the same past MoBA block
// as their t-th block: their Q rows are gathered, the block's K/V streamed once for all of them
// (the GQA sharing), and each row's partial (O, m, l) merged into its fp32 accumulator. A row is
// in at most one list per wave, so the merge needs no atomics.
//
// Same warpgroup split and tile steps as kernel.cuh (tile.cuh), 3 warpgroups:
//   warpgroup 0, producer:
//     warp 0, one thread: TMA loads of the item's K/V tiles (keys [block start, + Bs) of the kv
//       head, 128 per tile) into the 2-stage ring; the ring runs on across items, so the next
//       item's first tiles load while the consumers finish this one.
//     warps 1-3: gather the next item's Q rows with cp.async into the 128-byte-swizzled tile
//       (zero rows past the item's count) once the consumers have finished reading the current
//       Q (q_empty), then signal q_full; then ask L2 for the rows' accumulators for the merge.
//   warpgroups 1 and 2, consumers: 64 rows each; per key tile S = Q K^T, the last tile masked
//     past Bs keys (a past block is complete and wholly before every row: no causal mask), online
//     softmax, O += P V; then the merge: m = max of both sides, both rescaled to it.
// Keys past the block end that a 128-key box reads (the next block, or zeros past the end of the
// tensor) are masked; padding Q rows are computed but never merged.
#pragma once

#include <cstdint>

#include "kernels/tiled_mma/wave_items.cuh"
#include "kernels/wgmma_dense/kernel.cuh"

namespace moba::wgmma_dense::detail {

struct WaveParams {
    const void* q;                // [total, Hq, D] in the dtype
    const std::int32_t* cu_seqlens;
    float* acc_o;                 // [total, Hq, D] fp32 accumulator (launch.hpp's Accumulator)
    float2* acc_ml;               // [total, Hq] (m, l)
    int batch;
    int heads_q;
    int heads_kv;
    int group;                    // Hq / Hkv
    int block;                    // MoBA block size Bs
    float scale_log2;             // softmax scale * log2(e)
};

// The gatherers are one warp short of a warpgroup: warp 0 issues the K/V loads.
constexpr int kGatherThreads = 96;
// More producer registers than kernel.cuh's 24: the gatherers decode items and compute row
// addresses. 128 * 40 + 256 * 232 = 64512 = 384 * 168, the CTA's registers at launch.
constexpr int kWaveProducerRegs = 40;
constexpr int kWaveConsumerRegs = 232;

template <int kD>
struct WaveSmemPlan {
    using Plan = SmemPlan<kD>;  // the same Q tile, K/V ring and barrier region
    // q_full, k_full[2], v_full[2], k_empty[2], v_empty[2] as in SmemPlan, then q_empty.
    static constexpr int kQEmpty = Plan::kNumBars;
    static constexpr std::uint32_t kBytes = Plan::kBytes + 8;
};

// Element offset of item row r in a [total, Hq, D] tensor, or -1 past the item's rows.
template <int kD>
__device__ __forceinline__ std::int64_t item_row_offset(const tiled_mma::detail::WaveWork& w,
                                                        const tiled_mma::detail::WaveItem& it,
                                                        int r, int group, int heads_q) {
    if (r >= it.count) return -1;
    const int entry = w.rows[it.begin + r];  // token * group + h % group
    const std::int64_t token = entry / group;
    const int h = it.hk * group + entry % group;
    return (token * heads_q + h) * kD;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    sparse_wave_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                       WaveParams p, tiled_mma::detail::WaveWork w) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    extern __shared__ unsigned char smem_raw[];
    const Ring ring = ring_in<kD>(smem_raw);
    std::uint64_t* q_empty = ring.q_full + WaveSmemPlan<kD>::kQEmpty;  // after the ring's barriers

    const int first = w.wave_items[w.wave] + static_cast<int>(blockIdx.x);
    const int last = w.wave_items[w.wave + 1];
    const int stride = static_cast<int>(gridDim.x);
    const int key_tiles = (p.block + S::kBlockN - 1) / S::kBlockN;  // per item: one block

    if (threadIdx.x == 0) {
        mbar_init(ring.q_full, kGatherThreads);
        mbar_init(q_empty, 8);  // one arrival per consumer warp
        init_kv_barriers(ring);
        mbar_init_fence();
    }
    __syncthreads();

    const int warpgroup = threadIdx.x / 128;
    const int lane = threadIdx.x % 32;
    if (warpgroup == 0) {
        warpgroup_reg_dealloc<kWaveProducerRegs>();
        if (threadIdx.x == 0) {
            tma_prefetch_descriptor(&k_map);
            tma_prefetch_descriptor(&v_map);
            int n = 0;  // key tiles issued by this CTA over all its items: the ring position
            for (int item = first; item < last; item += stride) {
                const tiled_mma::detail::WaveItem it = tiled_mma::detail::decode_item<S::kBlockM>(
                    w, item, p.cu_seqlens, p.batch, p.heads_kv, p.block);
                for (int j = 0; j < key_tiles; ++j, ++n)
                    issue_kv_tile<kD>(ring, &k_map, &v_map, n, it.hk,
                                      static_cast<int>(it.key_start) + j * S::kBlockN);
            }
        } else if (threadIdx.x >= 32) {
            const int tid = threadIdx.x - 32;
            int local = 0;  // items of this CTA so far: the q barriers' phase
            for (int item = first; item < last; item += stride, ++local) {
                const tiled_mma::detail::WaveItem it = tiled_mma::detail::decode_item<S::kBlockM>(
                    w, item, p.cu_seqlens, p.batch, p.heads_kv, p.block);
                // The consumers have read the previous item's Q (their last S = Q K^T is done).
                if (local > 0) mbar_wait(q_empty, (local - 1) & 1);
                gather_tile<kD, S::kBlockM>(ring.smem + Plan::kQ, p.q, tid, kGatherThreads, [&](int r) {
                    return item_row_offset<kD>(w, it, r, p.group, p.heads_q);
                });
                mbar_arrive(ring.q_full);
                // The merge reads each row's accumulator once the block is done; start it now.
                for (int idx = tid; idx < it.count * (kD / 32); idx += kGatherThreads) {
                    const std::int64_t off = item_row_offset<kD>(w, it, idx / (kD / 32), p.group, p.heads_q);
                    prefetch_l2(p.acc_o + off + (idx % (kD / 32)) * 32);
                }
            }
        }
        return;
    }
    warpgroup_reg_alloc<kWaveConsumerRegs>();

    const int row0 = 64 * (warpgroup - 1);
    const int t = lane % 4;
    int n = 0;
    int local = 0;
    for (int item = first; item < last; item += stride, ++local) {
        const tiled_mma::detail::WaveItem it = tiled_mma::detail::decode_item<S::kBlockM>(
            w, item, p.cu_seqlens, p.batch, p.heads_kv, p.block);
        float o[kD / 2];
#pragma unroll
        for (int i = 0; i < kD / 2; ++i) o[i] = 0.0f;
        float m[2] = {-INFINITY, -INFINITY};
        float l[2] = {0.0f, 0.0f};

        mbar_wait(ring.q_full, local & 1);
        for (int j = 0; j < key_tiles; ++j, ++n) {
            const int s = n % kStages;
            const std::uint32_t full_parity = (n / kStages) & 1;

            float sc[64];
            mbar_wait(&ring.k_full[s], full_parity);
            qk_gemm<T, kD>(sc, ring.smem + Plan::kQ, row0, ring.smem + Plan::kK + s * S::kKVBytes);
            __syncwarp();
            if (lane == 0) {
                mbar_arrive(&ring.k_empty[s]);
                if (j == key_tiles - 1) mbar_arrive(q_empty);  // Q may be regathered
            }

            // Keys j * 128 + col of the block; those at Bs or beyond are not the block's.
            const int valid = p.block - j * S::kBlockN;
            if (valid < S::kBlockN) {
                for_each_acc([&](int i, int r, int c) {
                    if (acc_col(i, c) >= valid) sc[4 * i + 2 * r + c] = -INFINITY;
                });
            }

            online_softmax<kD>(sc, m, l, o, p.scale_log2);

            std::uint32_t a[8][4];
            p_fragments<T>(a, sc);
            mbar_wait(&ring.v_full[s], full_parity);
            pv_gemm<T, kD>(o, a, ring.smem + Plan::kV + s * S::kKVBytes);
            __syncwarp();
            if (lane == 0) mbar_arrive(&ring.v_empty[s]);
        }

        // Merge into the rows' accumulators. Every lane of a quad reads its row's (m, l) before
        // lane 0 overwrites it: the reads, a __syncwarp, then the writes.
        std::int64_t off[2];
        float2 ml[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
            off[r] = item_row_offset<kD>(w, it, row0 + acc_row(r), p.group, p.heads_q);
            ml[r] = off[r] >= 0 ? p.acc_ml[off[r] / kD] : make_float2(0.0f, 0.0f);
        }
        __syncwarp();
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (off[r] < 0) continue;
            // Both sides have seen at least one key (the own block, one key of this block):
            // both maxima are finite.
            const float m_new = fmaxf(ml[r].x, m[r]);
            const float ca = exp2f(ml[r].x - m_new);
            const float cb = exp2f(m[r] - m_new);
            float* dst = p.acc_o + off[r];
#pragma unroll
            for (int i = 0; i < kD / 8; ++i) {
                auto* cell = reinterpret_cast<float2*>(dst + acc_col(i, 0));
                const float2 old = *cell;
                *cell = make_float2(old.x * ca + o[4 * i + 2 * r] * cb, old.y * ca + o[4 * i + 2 * r + 1] * cb);
            }
            if (t == 0) p.acc_ml[off[r] / kD] = make_float2(m_new, ml[r].y * ca + l[r] * cb);
        }
    }
}

}  // namespace moba::wgmma_dense::detail
