// The MoBA forward's sparse-wave kernel on Hopper wgmma: persistent CTAs over the work items of
// one wave of the inverse block lists (kernels/moba/block_lists.hpp, wave_items.cuh). An item is up to
// 128 (token, query head) rows, any heads of one kv group, that chose the same past MoBA block
// as their t-th block: their Q rows are gathered, the block's K/V streamed once for all of them
// (the GQA sharing), and each row's partial (O, m, l) merged into its fp32 accumulator (the head
// pass's rows: kernels/moba/head_passes.hpp). A row is
// in at most one list per wave, so the merge needs no ordering between CTAs.
//
// Same warpgroup split and tile steps as causal_kernel.cuh (tile.cuh), 3 warpgroups:
//   warpgroup 0, producer:
//     warp 0, one thread: TMA loads of the item's K/V tiles (keys [block start, + Bs) of the kv
//       head, 128 per tile) into the 2-stage ring; the ring runs on across items, so the next
//       item's first tiles load while the consumers finish this one.
//     warps 1-3, gatherers: for item i, into Q buffer i % 2 once item i - 2's last S has landed
//       and its consumers hold their rows' offsets (q_empty): the rows' element offsets into
//       shared memory, then the Q rows with cp.async into the 128-byte-swizzled tile (zero rows
//       past the item's count); then q_full. Two buffers: at one key tile an item the gather of
//       item i + 2 starts as item i starts.
//     Both decode their items (ItemStream, wave_items.cuh) and the gatherers load the rows' list
//     entries an item ahead, so what follows q_empty is one round of loads: the Q rows.
//   warpgroups 1 and 2, consumers: 64 rows each; first the loads of their rows' accumulator
//     reference m (the own-block pass's m + kWaveRefOffset, or what an earlier wave raised it
//     to), used only by the merge; per key tile S = Q K^T, the last tile masked
//     past Bs keys (a past block is complete and wholly before every row: no causal mask), online
//     softmax, O += P V, tile n's softmax beside tile n - 1's P V (consume_tiles_after_first_s,
//     causal_kernel.cuh); the next item's first S is issued behind the item's last P V and runs
//     on the tensor cores during the merge. While the block's max m stays at or below the row's
//     reference, the partial is scaled to the reference (by 2^(m - ref) <= 1, in fp32: P itself
//     stays in [0, 1] against m, as fp16 needs) and added (red.global: fire and forget, no read;
//     one add per element and wave, so the sum is deterministic); otherwise (a block scoring
//     2^32 times the own block's largest weight) the row's accumulator is read, rescaled to m
//     and written.
// Keys past the block end that a 128-key box reads (the next block, or zeros past the end of the
// tensor) are masked; padding Q rows are computed but never merged.
#pragma once

#include <cstdint>

#include "kernels/moba/wave_items.cuh"
#include "kernels/wgmma/causal_kernel.cuh"

namespace moba::wgmma::detail {

struct WaveParams {
    const void* q;                // [total, Hq, D] in the dtype
    const std::int32_t* cu_seqlens;
    float* acc_o;                 // [total, acc_heads, D] fp32 accumulator (kernels/moba/accumulator.hpp)
    float2* acc_ml;               // [total, acc_heads] (m, l)
    int batch;
    int heads_q;
    int group;                    // Hq / Hkv
    int block;                    // MoBA block size Bs
    float scale_log2;             // softmax scale * log2(e)
    int acc_head0;                // the head pass: query heads [acc_head0, acc_head0 + acc_heads)
    int acc_heads;
};

// The gatherers are one warp short of a warpgroup: warp 0 issues the K/V loads.
constexpr int kGatherThreads = 96;
// More producer registers than kernel.cuh's 24: the gatherers decode items and keep row
// offsets (40 spilled at D 128). 128 * 56 + 256 * 224 = 64512 = 384 * 168, the CTA's registers
// at launch; the consumers compile without spills at 224.
constexpr int kWaveProducerRegs = 56;
constexpr int kWaveConsumerRegs = 224;
static_assert(fits_register_split(kWaveProducerRegs, kWaveConsumerRegs));

template <int kD>
struct WaveSmemPlan {
    using Plan = SmemPlan<kD>;  // Q buffer 0, the K/V ring and the ring's barriers as there
    static constexpr int kRows = TileShape<kD>::kBlockM;
    // After the ring's barriers: q_full of buffer 1 (buffer 0's is the ring's), q_empty[2].
    static constexpr int kQFull1 = Plan::kNumBars;
    static constexpr int kQEmpty = Plan::kNumBars + 1;
    static_assert(8 * (Plan::kNumBars + 3) <= 1024);
    static constexpr std::uint32_t kQ1 = Plan::kBars + 1024;  // Q buffer 1, 1024-byte aligned
    static constexpr std::uint32_t kRowOffsets = kQ1 + TileShape<kD>::kQBytes;  // int64 [2][kRows]
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kRowOffsets + 2 * kRows * 8 + 1024;
};

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    sparse_wave_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                       WaveParams p, sparse::detail::WaveWork w) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    using Wave = WaveSmemPlan<kD>;
    extern __shared__ unsigned char smem_raw[];
    const Ring ring = ring_in<kD>(smem_raw);
    // Per Q buffer b: the tile, its full and empty barriers, its rows' offsets (selected, not
    // indexed: an array indexed at run time would live in local memory).
    const auto q_tile = [&](int b) { return ring.smem + (b ? Wave::kQ1 : Plan::kQ); };
    const auto q_full = [&](int b) { return ring.q_full + (b ? Wave::kQFull1 : 0); };
    std::uint64_t* const q_empty = ring.q_full + Wave::kQEmpty;
    auto* const row_offsets = reinterpret_cast<std::int64_t*>(ring.smem + Wave::kRowOffsets);

    const int first = w.wave_items[w.wave] + static_cast<int>(blockIdx.x);
    const int last = w.wave_items[w.wave + 1];
    const int stride = static_cast<int>(gridDim.x);
    const int key_tiles = (p.block + S::kBlockN - 1) / S::kBlockN;  // per item: one block

    if (threadIdx.x == 0) {
        for (int b = 0; b < 2; ++b) {
            mbar_init(q_full(b), kGatherThreads);
            mbar_init(&q_empty[b], 8);  // one arrival per consumer warp
        }
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
            sparse::detail::ItemStream<S::kBlockM> items(w, first, last, stride);
            for (int item = first; item < last; item += stride) {
                const sparse::detail::WaveItem it = items.next(w, p.cu_seqlens, p.batch, p.block);
                for (int j = 0; j < key_tiles; ++j, ++n)
                    issue_kv_tile<kD>(ring, &k_map, &v_map, n, it.hk,
                                      static_cast<int>(it.key_start) + j * S::kBlockN);
            }
        } else if (threadIdx.x >= 32) {
            const int tid = threadIdx.x - 32;
            using Entries = sparse::detail::RowEntries<Wave::kRows, kGatherThreads>;
            sparse::detail::ItemStream<S::kBlockM> items(w, first, last, stride);
            sparse::detail::WaveItem next_it{};  // the next item and its rows' entries, loaded ahead
            Entries next_rows{};
            if (first < last) {
                next_it = items.next(w, p.cu_seqlens, p.batch, p.block);
                next_rows.load(w, next_it, tid);
            }
            int local = 0;  // items of this CTA so far: buffer local % 2, its use local / 2
            for (int item = first; item < last; item += stride, ++local) {
                const int b = local & 1;
                const int hk = next_it.hk;
                const Entries rows = next_rows;
                if (item + stride < last) {
                    next_it = items.next(w, p.cu_seqlens, p.batch, p.block);
                    next_rows.load(w, next_it, tid);
                }
                // Item local - 2 used this buffer: its consumers' last S has landed and they
                // have read its offsets.
                if (local >= 2) mbar_wait(&q_empty[b], ((local - 2) / 2) & 1);
                std::int64_t* offsets = row_offsets + b * Wave::kRows;
#pragma unroll
                for (int i = 0; i < Entries::kPerThread; ++i) {
                    const int r = tid + i * kGatherThreads;
                    if (r < Wave::kRows)  // entry -1: a row past the item's rows
                        offsets[r] = rows.entry[i] < 0 ? -1
                                                       : sparse::detail::entry_row(rows.entry[i], hk, p.group, p.heads_q) * kD;
                }
                named_barrier_sync(1, kGatherThreads);  // every gatherer reads every offset
                gather_tile<kD, S::kBlockM>(q_tile(b), p.q, tid, kGatherThreads,
                                            [&](int r) { return offsets[r]; });
                mbar_arrive(q_full(b));  // releases the offsets too
            }
        }
        return;
    }
    warpgroup_reg_alloc<kWaveConsumerRegs>();

    const int row0 = 64 * (warpgroup - 1);
    const int t = lane % 4;
    const auto k_stage = [&](int n) { return ring.smem + Plan::kK + ring_stage(n) * S::kKVBytes; };
    // Keys j * 128 + col of the block; those at Bs or beyond are not the block's.
    auto mask = [&](float (&sc)[64], int j) {
        const int valid = p.block - j * S::kBlockN;
        if (valid >= S::kBlockN) return;
        for_each_acc([&](int i, int r, int c) {
            if (acc_col(i, c) >= valid) sc[4 * i + 2 * r + c] = -INFINITY;
        });
    };
    // Across items: item i + 1's first S = Q K^T is issued behind item i's last P V and runs
    // while item i merges (at block 128 an item is one key tile, and the tensor cores idled
    // through every merge and every first S's wait). sc holds the S of the item about to start.
    float sc[64];
    std::uint32_t a[8][4];
    int n = 0;  // the ring position of the item's first key tile
    if (first < last) {
        mbar_wait(q_full(0), 0);
        mbar_wait(&ring.k_full[0], 0);
        qk_gemm<T, kD>(sc, q_tile(0), row0, k_stage(0));
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.k_empty[0]);
    }
    int local = 0;
    for (int item = first; item < last; item += stride, ++local) {
        const int b = local & 1;
        const std::int64_t* offsets = row_offsets + b * Wave::kRows + row0;
        float o[kD / 2];
#pragma unroll
        for (int i = 0; i < kD / 2; ++i) o[i] = 0.0f;
        float m[2] = {-INFINITY, -INFINITY};
        float l[2] = {0.0f, 0.0f};

        // q_full(b) was waited for before this item's first S, which has landed. Only the S
        // products read the Q tile, and the merge takes the rows' offsets from registers, so
        // buffer b is released to item local + 2's gather once the item's last S has landed: at
        // the item's start when it has one key tile (block <= 128), not after its merge (the
        // consumers waited on the gathers' DRAM latency, kernels/NOTES.md).
        std::int64_t q_off[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) q_off[r] = offsets[acc_row(r)];
        const auto release_q = [&] {
            __syncwarp();
            if (lane == 0) mbar_arrive(&q_empty[b]);
        };
        if (key_tiles == 1) release_q();
        // The rows' accumulator references, loaded now and used by the merge: the load's latency
        // (DRAM: the rows are scattered) passes under the item's products.
        float refs[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            refs[r] = q_off[r] >= 0 ? p.acc_ml[sparse::detail::pass_offset<kD>(q_off[r], p.heads_q, p.acc_head0,
                                                                                 p.acc_heads) / kD].x
                                    : 0.0f;
        }
        consume_tiles_after_first_s<T, kD>(ring, q_tile(b), row0, n, key_tiles, p.scale_log2, m, l, o, sc, a, mask);
        if (key_tiles > 1) release_q();  // every S of the item has landed
        const int last_tile = n + key_tiles - 1;
        mbar_wait(&ring.v_full[ring_stage(last_tile)], ring_parity(last_tile));
        pv_gemm_issue<T, kD>(o, a, ring.smem + Plan::kV + ring_stage(last_tile) * S::kKVBytes);
        // The next item's first S, behind the P V. Past the CTA's last item it is issued all the
        // same, on whatever buffer b ^ 1 and the next K stage hold (no copy is in flight into
        // either any more), and discarded: a wgmma under a branch would make ptxas serialize the
        // pipeline.
        const bool has_next = item + stride < last;
        const int next_n = n + key_tiles;
        if (has_next) {
            mbar_wait(q_full(b ^ 1), ((local + 1) / 2) & 1);
            mbar_wait(&ring.k_full[ring_stage(next_n)], ring_parity(next_n));
        }
        qk_gemm_issue<T, kD>(sc, q_tile(b ^ 1), row0, k_stage(next_n));
        wgmma_wait<1>();  // the P V has landed in O; the next S may still run
        fence_operands(o);
        fence_operands(a);
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.v_empty[ring_stage(last_tile)]);

        // Merge. Each lane owns its row's columns acc_col(i, *); lane t == 0 of the quad owns (m, l).
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
            if (q_off[r] < 0) continue;
            const std::int64_t off = sparse::detail::pass_offset<kD>(q_off[r], p.heads_q, p.acc_head0, p.acc_heads);
            // The accumulator's reference (finite: the own block saw at least the row itself).
            const float ref = refs[r];
            float* dst = p.acc_o + off;
            float2* ml = p.acc_ml + off / kD;
            if (m[r] <= ref) {
                // O += o * cb, l += l * cb on the accumulator's reference (m unchanged).
                const float cb = exp2f(m[r] - ref);
#pragma unroll
                for (int i = 0; i < kD / 8; ++i)
                    atomicAdd(reinterpret_cast<float2*>(dst + acc_col(i, 0)),
                              make_float2(o[4 * i + 2 * r] * cb, o[4 * i + 2 * r + 1] * cb));
                if (t == 0) atomicAdd(&ml->y, l[r] * cb);
            } else {
                // m rose above the reference: rescale the accumulator to it (no other CTA
                // touches this row in this wave, so the read-modify-write is safe).
                const float ca = exp2f(ref - m[r]);
#pragma unroll
                for (int i = 0; i < kD / 8; ++i) {
                    auto* cell = reinterpret_cast<float2*>(dst + acc_col(i, 0));
                    const float2 old = *cell;
                    *cell = make_float2(fmaf(old.x, ca, o[4 * i + 2 * r]), fmaf(old.y, ca, o[4 * i + 2 * r + 1]));
                }
                if (t == 0) *ml = make_float2(m[r], fmaf(ml->y, ca, l[r]));
            }
        }
        wgmma_wait<0>();  // the next item's first S has landed in sc
        fence_operands(sc);
        __syncwarp();
        if (has_next && lane == 0) mbar_arrive(&ring.k_empty[ring_stage(next_n)]);
        n = next_n;
    }
}

}  // namespace moba::wgmma::detail
