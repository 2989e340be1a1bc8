// The wgmma_moba backward's sparse dQ waves (moba_backward.cu): persistent CTAs over the work
// items of one wave of the inverse block lists (kernels/moba/block_lists.hpp, wave_items.cuh),
// the forward's wave kernel (wave_kernel.cuh) with dq_kernel.cuh's tile steps. An item is up to
// 128 (token, query head) rows of one kv group that chose the same past MoBA block as their t-th
// block; their Q and dO rows and row statistics are gathered, the block's K/V streamed once for
// all of them, and per key tile each consumer (64 rows) computes
//   S = Q K^T, dP = dO V^T, P = 2^(S scale log2 e - lse log2 e), dS = P (dP - Delta), dQ += dS K
// (keys past the block's Bs masked; a past block is complete and wholly before every row, so no
// causal mask). At the item's end each row adds its unscaled dQ to the head pass's fp32
// accumulator (red.global, one add per element and wave). A row is in at most one list per
// wave and the waves are launched one after another after the own-block pass's plain stores,
// so every element's sum runs in a fixed order: the dQ is bitwise repeatable.
//
// 3 warpgroups as the forward's: warpgroup 0's thread 0 issues the K/V tiles into the 2-stage
// ring (which runs on across items); its warps 1-3 gather (rows' offsets and statistics into
// shared memory, then Q and dO by cp.async into one buffer each, once the consumers released
// the previous item: one buffer, since Q and dO of 128 rows take 64 KB at D 128 beside the
// 128 KB ring); warpgroups 1 and 2 consume. The consumers keep their rows' offsets and
// statistics in registers and release the buffers as soon as the item's last S and dP products
// are done, so the next item's gather runs under the last dS K product and the dQ adds (with
// one buffer every item waits for its gather; at block 128 an item is one key tile, so none of
// its own work hides that wait). Measured at block 2048: no change (kernels/NOTES.md).
#pragma once

#include <cstdint>

#include "kernels/moba/wave_items.cuh"
#include "kernels/wgmma/causal_kernel.cuh"

namespace moba::wgmma::detail {

struct DqWaveParams {
    const void* q;                // [total, Hq, D] in the dtype
    const void* dout;             // [total, Hq, D] in the dtype
    const float2* stats;          // [total, Hq]: (lse log2 e, Delta)
    const std::int32_t* cu_seqlens;
    float* dq_acc;                // [total, acc_heads, D] fp32, unscaled
    int batch;
    int heads_q;
    int group;                    // Hq / Hkv
    int block;                    // MoBA block size Bs
    float scale_log2;             // softmax scale * log2(e)
    int acc_head0;                // the head pass: query heads [acc_head0, acc_head0 + acc_heads)
    int acc_heads;
};

constexpr int kDqGatherThreads = 96;
// The gatherers keep row offsets and item fields; the consumers hold dQ, S and dP (64 each)
// and the dS fragments, as dq_kernel.cuh's. 128 * 40 + 256 * 232 = 64512.
constexpr int kDqWaveProducerRegs = 40;
constexpr int kDqWaveConsumerRegs = 232;
static_assert(fits_register_split(kDqWaveProducerRegs, kDqWaveConsumerRegs));

template <int kD>
struct DqWavePlan {
    using Plan = SmemPlan<kD>;  // Q, the K/V ring and its barriers as there
    static constexpr int kRows = TileShape<kD>::kBlockM;
    // After the ring's barriers: do_full unused (q_full covers both tiles), q_empty.
    static constexpr int kQEmpty = Plan::kNumBars;
    static_assert(8 * (Plan::kNumBars + 1) <= 1024);
    static constexpr std::uint32_t kDO = Plan::kBars + 1024;  // dO tile, 1024-byte aligned
    static constexpr std::uint32_t kRowOffsets = kDO + TileShape<kD>::kQBytes;  // int64 [kRows]
    static constexpr std::uint32_t kRowStats = kRowOffsets + kRows * 8;         // float2 [kRows]
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kRowStats + kRows * 8 + 1024;
};

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    dq_wave_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                   DqWaveParams p, sparse::detail::WaveWork w) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    using Wave = DqWavePlan<kD>;
    extern __shared__ unsigned char smem_raw[];
    const Ring ring = ring_in<kD>(smem_raw);
    unsigned char* const q_tile = ring.smem + Plan::kQ;
    unsigned char* const do_tile = ring.smem + Wave::kDO;
    std::uint64_t* const q_empty = ring.q_full + Wave::kQEmpty;
    auto* const row_offsets = reinterpret_cast<std::int64_t*>(ring.smem + Wave::kRowOffsets);
    auto* const row_stats = reinterpret_cast<float2*>(ring.smem + Wave::kRowStats);

    const int first = w.wave_items[w.wave] + static_cast<int>(blockIdx.x);
    const int last = w.wave_items[w.wave + 1];
    const int stride = static_cast<int>(gridDim.x);
    const int key_tiles = (p.block + S::kBlockN - 1) / S::kBlockN;  // per item: one block

    if (threadIdx.x == 0) {
        mbar_init(ring.q_full, kDqGatherThreads);
        mbar_init(q_empty, 8);  // one arrival per consumer warp
        init_kv_barriers(ring);
        mbar_init_fence();
    }
    __syncthreads();

    const int warpgroup = threadIdx.x / 128;
    const int lane = threadIdx.x % 32;
    if (warpgroup == 0) {
        warpgroup_reg_dealloc<kDqWaveProducerRegs>();
        if (threadIdx.x == 0) {
            tma_prefetch_descriptor(&k_map);
            tma_prefetch_descriptor(&v_map);
            int n = 0;  // key tiles issued by this CTA over all its items: the ring position
            for (int item = first; item < last; item += stride) {
                const sparse::detail::WaveItem it = sparse::detail::decode_item<S::kBlockM>(
                    w, item, p.cu_seqlens, p.batch, p.block);
                for (int j = 0; j < key_tiles; ++j, ++n)
                    issue_kv_tile<kD>(ring, &k_map, &v_map, n, it.hk,
                                      static_cast<int>(it.key_start) + j * S::kBlockN);
            }
        } else if (threadIdx.x >= 32) {
            const int tid = threadIdx.x - 32;
            int local = 0;  // items of this CTA so far
            for (int item = first; item < last; item += stride, ++local) {
                const sparse::detail::WaveItem it = sparse::detail::decode_item<S::kBlockM>(
                    w, item, p.cu_seqlens, p.batch, p.block);
                // Item local - 1 used the buffers: its consumers have done their last reads of
                // them (the S and dP products of its last key tile; offsets and statistics earlier).
                if (local >= 1) mbar_wait(q_empty, (local - 1) & 1);
                for (int r = tid; r < Wave::kRows; r += kDqGatherThreads) {
                    std::int64_t off = -1;
                    float2 st = make_float2(INFINITY, 0.0f);  // padding rows: P = 0, dS = 0
                    if (r < it.count) {
                        const std::int64_t row = sparse::detail::entry_row(w.rows[it.begin + r], it.hk, p.group, p.heads_q);
                        off = row * kD;
                        st = p.stats[row];
                    }
                    row_offsets[r] = off;
                    row_stats[r] = st;
                }
                named_barrier_sync(1, kDqGatherThreads);  // every gatherer reads every offset
                gather_tile<kD, S::kBlockM>(q_tile, p.q, tid, kDqGatherThreads, [&](int r) { return row_offsets[r]; });
                gather_tile<kD, S::kBlockM>(do_tile, p.dout, tid, kDqGatherThreads, [&](int r) { return row_offsets[r]; });
                mbar_arrive(ring.q_full);  // releases the offsets and statistics too
            }
        }
        return;
    }
    warpgroup_reg_alloc<kDqWaveConsumerRegs>();

    const int row0 = 64 * (warpgroup - 1);
    int n = 0;
    int local = 0;
    for (int item = first; item < last; item += stride, ++local) {
        float dq[kD / 2];
#pragma unroll
        for (int i = 0; i < kD / 2; ++i) dq[i] = 0.0f;

        mbar_wait(ring.q_full, local & 1);
        float lse2[2];
        float delta[2];
        std::int64_t q_off[2];  // the rows' element offsets (-1: padding), for the adds
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float2 st = row_stats[row0 + acc_row(r)];
            lse2[r] = st.x;
            delta[r] = st.y;
            q_off[r] = row_offsets[row0 + acc_row(r)];
        }
        for (int j = 0; j < key_tiles; ++j, ++n) {
            const int s = n % kStages;
            const std::uint32_t full_parity = (n / kStages) & 1;
            unsigned char* k_tile = ring.smem + Plan::kK + s * S::kKVBytes;

            float sc[64];
            float dp[64];
            mbar_wait(&ring.k_full[s], full_parity);
            qk_gemm<T, kD>(sc, q_tile, row0, k_tile);
            mbar_wait(&ring.v_full[s], full_parity);
            qk_gemm<T, kD>(dp, do_tile, row0, ring.smem + Plan::kV + s * S::kKVBytes);
            __syncwarp();
            if (lane == 0) {
                mbar_arrive(&ring.v_empty[s]);
                // The item's last Q and dO reads are done (qk_gemm waits for its wgmma): the
                // gatherers may refill the buffers, offsets and statistics.
                if (j == key_tiles - 1) mbar_arrive(q_empty);
            }

            // Keys j * 128 + col of the block; those at Bs or beyond are not the block's.
            const int valid = p.block - j * S::kBlockN;
            for_each_acc([&](int i, int r, int c) {
                const int e = 4 * i + 2 * r + c;
                float prob = exp2_approx(fmaf(sc[e], p.scale_log2, -lse2[r]));
                if (valid < S::kBlockN && acc_col(i, c) >= valid) prob = 0.0f;
                dp[e] = prob * (dp[e] - delta[r]);
            });

            std::uint32_t a[8][4];
            p_fragments<T>(a, dp);
            pv_gemm<T, kD>(dq, a, k_tile);  // dQ += dS K: K read MN-major
            __syncwarp();
            if (lane == 0) mbar_arrive(&ring.k_empty[s]);
        }

        // dq_acc += dQ (unscaled) for the item's rows; padding rows have offset -1.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (q_off[r] < 0) continue;
            float* dst = p.dq_acc + sparse::detail::pass_offset<kD>(q_off[r], p.heads_q, p.acc_head0, p.acc_heads);
#pragma unroll
            for (int i = 0; i < kD / 8; ++i)
                atomicAdd(reinterpret_cast<float2*>(dst + acc_col(i, 0)), make_float2(dq[4 * i + 2 * r], dq[4 * i + 2 * r + 1]));
        }
    }
}

}  // namespace moba::wgmma::detail
