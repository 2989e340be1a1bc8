// The wgmma causal kernel (wgmma_dense, and wgmma_moba's first pass): FlashAttention-3-style causal attention on Hopper, in two modes
// (template flag kOwnBlock):
//   dense:     keys 0 .. the row (full causal attention); writes out and lse.
//   own block: keys from the start of the row's own MoBA block to the row (the MoBA forward's
//              first pass); writes the unnormalised fp32 accumulator (O, m, l) that the sparse
//              waves (wave_kernel.cuh) merge into, in kernels/moba/accumulator.hpp's layout, against the
//              reference m + kWaveRefOffset (below).
//
// One CTA per (query head, 128-row query tile, sequence), 3 warpgroups:
//   warpgroup 0, producer: one thread issues TMA loads (Q once, then K and V tiles of 128 keys
//     into a 2-stage ring); the warpgroup gives its registers to the consumers (setmaxnreg).
//   warpgroups 1 and 2, consumers: 64 query rows each. Per key tile: S = Q K^T on wgmma from
//     shared memory, online softmax in registers (log2 domain), P rounded to the dtype and fed
//     from registers as the A operand of O += P V (V read MN-major from shared memory).
//     While one consumer does its softmax the other's wgmma keeps the tensor cores busy. Each
//     consumer also overlaps with itself: tile n's softmax runs while tile n - 1's P V is on
//     the tensor cores (consume_tiles_pipelined, both modes and the sparse waves; -14% per tile
//     for the dense forward at 32K, kernels/NOTES.md).
// Synchronisation: per stage a "full" mbarrier (TMA transaction bytes) and an "empty" one
// (one arrival per consumer warp once its wgmmas reading the stage have completed).
// Dense: key tiles 0 .. the diagonal tile; only the diagonal tile is masked. Own block: key tiles
// of 128 from key_base (the own block of the tile's first row) to the tile's last row; a tile
// may span several MoBA blocks (Bs < 128, or Bs not a multiple of 128) and then rows differ in
// their lower bound, so each key tile not inside every row's window [own-block start, row] of a
// consumer's 64 rows is masked on both sides. Varlen: TMA boxes address the packed tensor, so a
// tile may read rows of the next sequence (or zeros past the end of the tensor): such keys sit
// above every valid query of the tile, the causal mask removes them; such query rows are
// computed but never written.
#pragma once

#include <cstdint>

#include "kernels/wgmma/l2_sections.hpp"
#include "kernels/wgmma/tile.cuh"

namespace moba::wgmma::detail {

struct KernelParams {
    const std::int32_t* cu_seqlens;
    void* out;          // dense: [total, Hq, D] in the dtype
    float* lse;         // dense: [Hq, total]
    std::int64_t total;
    int heads_q;
    int group;          // Hq / Hkv
    float scale_log2;   // softmax scale * log2(e)
    // Own-block mode only (after the dense fields, so the dense mode's code is unchanged).
    int block;          // MoBA block size Bs
    float* acc_o;       // [total, acc_heads, D] fp32, unnormalised
    float2* acc_ml;     // [total, acc_heads] (m, l): m in the log2 domain, l the full row sum
    int acc_head0;      // the head pass (kernels/moba/head_passes.hpp): query heads
    int acc_heads;      // [acc_head0, acc_head0 + acc_heads), the grid's heads
    int section_heads;  // dense mode: query heads per L2 section (l2_sections.hpp)
};

// The own-block mode stores each row's accumulator against the reference m + kWaveRefOffset
// (log2 domain) instead of its own-block max m: O and l scaled by 2^-kWaveRefOffset, exactly (a
// power of two; O stays a normal float unless |O| < 2^-94). A sparse wave (wave_kernel.cuh)
// whose block max stays below this reference scales its partial to it and merges by plain
// addition, without reading the accumulator; only a block scoring 2^32 times the own block's
// largest weight makes it read, rescale and write.
constexpr float kWaveRefOffset = 32.0f;
constexpr float kWaveRefScale = 0x1p-32f;  // 2^-kWaveRefOffset
static_assert(kWaveRefScale * 4294967296.0f == 1.0f);

constexpr int kThreads = 384;
constexpr int kStages = 2;
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
// setmaxnreg only moves registers inside the CTA's launch allocation: kThreads threads at the
// __launch_bounds__(kThreads, 1) budget, 65536 / 384 rounded down to a multiple of 8 = 168 each
// (64512). A split beyond it is not refused: the consumers' setmaxnreg.inc waits for registers
// that never come, and the kernel hangs (a 32 / 240 split of moba_dkdv_kernel did on the H200,
// kernels/NOTES.md, 2026-12-03).
constexpr bool fits_register_split(int producer, int consumer) {
    return 128 * producer + 256 * consumer <= kThreads * (65536 / kThreads / 8 * 8);
}
static_assert(fits_register_split(kProducerRegs, kConsumerRegs));

template <int kD>
struct SmemPlan {
    using S = TileShape<kD>;
    static constexpr std::uint32_t kQ = 0;
    static constexpr std::uint32_t kK = S::kQBytes;
    static constexpr std::uint32_t kV = kK + kStages * S::kKVBytes;
    static constexpr std::uint32_t kBars = kV + kStages * S::kKVBytes;
    // q_full, k_full[2], v_full[2], k_empty[2], v_empty[2]
    static constexpr int kNumBars = 1 + 4 * kStages;
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kBars + 8 * kNumBars + 1024;
};

// The CTA's dynamic shared window aligned up to 1024 bytes (the 128-byte swizzle atoms that TMA
// writes and wgmma descriptors read need it; SmemPlan::kBytes reserves the slack) and the
// mbarriers of the K/V ring at SmemPlan::kBars: q_full, then k_full, v_full, k_empty, v_empty
// of every stage. Both kernels (causal and sparse wave) share this layout.
struct Ring {
    unsigned char* smem;
    std::uint64_t* q_full;
    std::uint64_t* k_full;
    std::uint64_t* v_full;
    std::uint64_t* k_empty;
    std::uint64_t* v_empty;
};

// Ring position n (a CTA's key tiles counted over its whole run): its stage, and the phase
// parity of that stage's full barriers for this use (use n / kStages).
__device__ __forceinline__ int ring_stage(int n) { return n % kStages; }
__device__ __forceinline__ std::uint32_t ring_parity(int n) { return static_cast<std::uint32_t>((n / kStages) & 1); }

// The ring over the aligned window smem with its barriers from `bars` on.
__device__ __forceinline__ Ring ring_at(unsigned char* smem, std::uint64_t* bars) {
    return {smem, bars, bars + 1, bars + 1 + kStages, bars + 1 + 2 * kStages, bars + 1 + 3 * kStages};
}

template <int kD>
__device__ __forceinline__ Ring ring_in(unsigned char* smem_raw) {
    unsigned char* smem = aligned_smem(smem_raw);
    return ring_at(smem, reinterpret_cast<std::uint64_t*>(smem + SmemPlan<kD>::kBars));
}

// One thread: the K/V stages' barriers (full: one TMA arrival; empty: one arrival per
// consumer warp).
__device__ __forceinline__ void init_kv_barriers(const Ring& ring) {
    for (int s = 0; s < kStages; ++s) {
        mbar_init(&ring.k_full[s], 1);
        mbar_init(&ring.v_full[s], 1);
        mbar_init(&ring.k_empty[s], 8);
        mbar_init(&ring.v_empty[s], 8);
    }
}

// Producer thread: key tile number n of the CTA's ring (keys key0 .. key0 + 127 of kv head hk)
// into stage n % kStages, K then V, each after the consumers released the stage's previous use
// (use n / kStages waits for completion n / kStages - 1 of the stage's empty barrier).
template <int kD>
__device__ __forceinline__ void issue_kv_tile(const Ring& ring, const CUtensorMap* k_map,
                                              const CUtensorMap* v_map, int n, int hk, int key0) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    const int s = n % kStages;
    const std::uint32_t empty_parity = ((n / kStages) - 1) & 1;
    if (n >= kStages) mbar_wait(&ring.k_empty[s], empty_parity);
    mbar_arrive_expect_tx(&ring.k_full[s], S::kKVBytes);
    load_tile<kD, S::kBlockN>(ring.smem + Plan::kK + s * S::kKVBytes, k_map, &ring.k_full[s], hk, key0);
    if (n >= kStages) mbar_wait(&ring.v_empty[s], empty_parity);
    mbar_arrive_expect_tx(&ring.v_full[s], S::kKVBytes);
    load_tile<kD, S::kBlockN>(ring.smem + Plan::kV + s * S::kKVBytes, v_map, &ring.v_full[s], hk, key0);
}

// The rows and keys of one CTA of the causal kernel or of the dQ kernel (dq_kernel.cuh), both
// gridded alike: heads * max_tiles CTAs on x, dispatched x fastest, so the longest tiles start
// first and the short ones fill the tail of the grid. Tiles share x with the heads (not grid y,
// at most 65535 tiles: 8M tokens) so 10M-token sequences launch. Sequences on z.
// Dense: in L2 sections of p.section_heads heads (l2_sections.hpp: the CTAs running together
// share few K/V streams). Own block: x = (reversed tile) * heads + head over the head pass's
// heads; each CTA reads only its own MoBA block's keys, which stay in L2 anyway.
// cta_rows, then (once q0 < len) cta_keys.
struct CtaRows {
    int h;         // query head
    int start;     // the sequence's first token
    int len;       // its length
    int tile;      // the row tile
    int q0;        // its first row in the sequence (q0 >= len: nothing to do)
    int key_base;  // the first key: 0, or own block: the row's MoBA block start (cta_keys)
    int n_tiles;   // 128-key tiles from key_base through the diagonal one (cta_keys)
};
template <int kBlockM, bool kOwnBlock, typename Params>
__device__ __forceinline__ CtaRows cta_rows(const Params& p, int max_tiles) {
    CtaRows c;
    const int b = blockIdx.z;
    if constexpr (kOwnBlock) {
        const auto grid_heads = static_cast<unsigned>(p.acc_heads);
        c.h = p.acc_head0 + static_cast<int>(blockIdx.x % grid_heads);
        c.tile = max_tiles - 1 - static_cast<int>(blockIdx.x / grid_heads);
    } else {
        const SectionSlot slot = section_order(blockIdx.x, p.heads_q, max_tiles, p.section_heads);
        c.h = slot.head;
        c.tile = max_tiles - 1 - slot.rank;
    }
    c.start = p.cu_seqlens[b];
    c.len = p.cu_seqlens[b + 1] - c.start;
    c.q0 = c.tile * kBlockM;
    return c;
}
// Dense: keys [0, min(q0 + 128, len)); with kBlockN == kBlockM that is tiles 0 .. tile.
// Own block: keys [key_base, min(q0 + 128, len)) in tiles of 128 from key_base.
template <int kBlockM, int kBlockN, bool kOwnBlock>
__device__ __forceinline__ void cta_keys(CtaRows& c, int block) {
    static_assert(kBlockN == kBlockM, "the diagonal tile is the last key tile");
    c.key_base = 0;
    c.n_tiles = c.tile + 1;
    if constexpr (kOwnBlock) {
        c.key_base = c.q0 / block * block;
        c.n_tiles = (min(c.q0 + kBlockM, c.len) - c.key_base + kBlockN - 1) / kBlockN;
    }
}

// Own block: a consumer's two rows' windows [lo, hi] relative to key_base, and the bounds that
// decide which key tiles need masking: a tile below every row's lower bound and above no row's
// diagonal is inside every window.
struct OwnBlockWindows {
    int lo[2];
    int hi[2];
    int max_lo;
    int min_hi;
};
__device__ __forceinline__ OwnBlockWindows own_block_windows(const CtaRows& c, int row0, int block) {
    OwnBlockWindows w;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int pos = c.q0 + row0 + acc_row(r);
        w.lo[r] = pos / block * block - c.key_base;
        w.hi[r] = pos - c.key_base;
    }
    w.max_lo = min(c.q0 + row0 + 63, c.len - 1) / block * block - c.key_base;
    w.min_hi = c.q0 + row0 - c.key_base;
    return w;
}

// Own block: on a tile that needs the mask (some key below a row's window or past the diagonal),
// the scores outside the rows' windows become -inf, so P = 2^-inf = 0 there. The test is uniform
// for the warpgroup and the other tiles run no compare: a compare folded into the probabilities'
// loop instead compiled to a per-element branch on every tile in the dQ pass (kernels/NOTES.md,
// 2026-12-03). key0: the tile's first key relative to key_base. Used by the forward and dQ.
template <int kBlockN>
__device__ __forceinline__ void mask_own_block_tile(float (&sc)[64], const OwnBlockWindows& w, int key0) {
    if (key0 < w.max_lo || key0 + kBlockN - 1 > w.min_hi) {
        for_each_acc([&](int i, int r, int c) {
            const int key = key0 + acc_col(i, c);
            if (key < w.lo[r] || key > w.hi[r]) sc[4 * i + 2 * r + c] = -INFINITY;
        });
    }
}

// A consumer's loop over key tiles, FlashAttention-3's overlap inside a warpgroup: tile n's
// S = Q K^T is issued before tile n - 1's O += P V, and tile n's softmax runs while that P V is
// still on the tensor cores; O is rescaled by tile n's alpha once the P V has landed. The
// arithmetic and its order are those of one tile after another (O = O alpha_n + P_n V_n), so
// the result is the same bit for bit; only the waits moved. Registers: S, the previous tile's P
// fragments and O live together (64 + 32 + 64 per thread).
// The tiles sit at ring positions ring_pos .. ring_pos + n_tiles - 1 (the sparse waves' ring runs
// on across items); n_tiles >= 1. mask(sc, j) sets the scores of the run's tile j that its rows
// must not see to -inf. consume_tiles_pipelined runs the whole loop for the dense and own-block
// passes; the sparse waves (wave_kernel.cuh) run its middle part, consume_tiles_after_first_s,
// between their own first S and last P V. -14% per tile for the dense forward at 32K
// (kernels/NOTES.md).
//
// consume_tiles_pipelined once tile 0's S is in sc and its K stage released: tile 0's softmax
// (O holds nothing of this run yet: O is zero, or the sparse waves' fresh partial) and P
// fragments, then tiles 1 .. n_tiles - 1 overlapped as described above. On return the last
// tile's P fragments are in a and its P V is still to be issued (its V at ring position
// ring_pos + n_tiles - 1); no wgmma is in flight. The sparse waves call it directly so that the
// next item's first S can run under an item's last P V and merge (wave_kernel.cuh).
template <typename T, int kD, typename Mask>
__device__ __forceinline__ void consume_tiles_after_first_s(const Ring& ring, const unsigned char* q_tile, int row0,
                                                            int ring_pos, int n_tiles, float scale_log2,
                                                            float (&m)[2], float (&l)[2], float (&o)[kD / 2],
                                                            float (&sc)[64], std::uint32_t (&a)[8][4], Mask& mask) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    const int lane = threadIdx.x % 32;
    const auto stage = [&](int j) { return ring_stage(ring_pos + j); };
    const auto parity = [&](int j) { return ring_parity(ring_pos + j); };
    float alpha[2];
    mask(sc, 0);
    softmax_step(sc, m, l, alpha, scale_log2);
    p_fragments<T>(a, sc);
    for (int j = 1; j < n_tiles; ++j) {
        const int s = stage(j), prev = stage(j - 1);
        mbar_wait(&ring.k_full[s], parity(j));
        qk_gemm_issue<T, kD>(sc, q_tile, row0, ring.smem + Plan::kK + s * S::kKVBytes);
        mbar_wait(&ring.v_full[prev], parity(j - 1));
        pv_gemm_issue<T, kD>(o, a, ring.smem + Plan::kV + prev * S::kKVBytes);
        wgmma_wait<1>();  // S of tile j is ready; tile j - 1's P V may still run
        fence_operands(sc);
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.k_empty[s]);
        mask(sc, j);
        softmax_step(sc, m, l, alpha, scale_log2);
        wgmma_wait<0>();  // tile j - 1's P V has landed in O; its P fragments are free
        fence_operands(o);
        fence_operands(a);
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.v_empty[prev]);
        rescale_rows<kD>(o, alpha);
        p_fragments<T>(a, sc);
    }
}

template <typename T, int kD, typename Mask>
__device__ __forceinline__ void consume_tiles_pipelined(const Ring& ring, const unsigned char* q_tile, int row0,
                                                        int ring_pos, int n_tiles, float scale_log2,
                                                        float (&m)[2], float (&l)[2], float (&o)[kD / 2],
                                                        Mask&& mask) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    const int lane = threadIdx.x % 32;
    float sc[64];
    std::uint32_t a[8][4];
    const int first = ring_stage(ring_pos);
    mbar_wait(&ring.k_full[first], ring_parity(ring_pos));
    qk_gemm<T, kD>(sc, q_tile, row0, ring.smem + Plan::kK + first * S::kKVBytes);
    __syncwarp();
    if (lane == 0) mbar_arrive(&ring.k_empty[first]);
    consume_tiles_after_first_s<T, kD>(ring, q_tile, row0, ring_pos, n_tiles, scale_log2, m, l, o, sc, a, mask);
    const int last = ring_stage(ring_pos + n_tiles - 1);
    mbar_wait(&ring.v_full[last], ring_parity(ring_pos + n_tiles - 1));
    pv_gemm<T, kD>(o, a, ring.smem + Plan::kV + last * S::kKVBytes);
    __syncwarp();
    if (lane == 0) mbar_arrive(&ring.v_empty[last]);
}

template <typename T, int kD, bool kOwnBlock>
__global__ void __launch_bounds__(kThreads, 1)
    causal_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map,
                        const __grid_constant__ CUtensorMap v_map, KernelParams p, int max_tiles) {
    using S = TileShape<kD>;
    using Plan = SmemPlan<kD>;
    extern __shared__ unsigned char smem_raw[];
    const Ring ring = ring_in<kD>(smem_raw);

    CtaRows cta = cta_rows<S::kBlockM, kOwnBlock>(p, max_tiles);
    const int h = cta.h, start = cta.start, len = cta.len, q0 = cta.q0;
    if (q0 >= len) return;  // uniform for the whole CTA, before any barrier is used
    cta_keys<S::kBlockM, S::kBlockN, kOwnBlock>(cta, p.block);
    const int key_base = cta.key_base, n_tiles = cta.n_tiles;

    if (threadIdx.x == 0) {
        mbar_init(ring.q_full, 1);
        init_kv_barriers(ring);
        mbar_init_fence();
    }
    __syncthreads();

    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        warpgroup_reg_dealloc<kProducerRegs>();
        if (threadIdx.x == 0) {
            const int hk = h / p.group;
            tma_prefetch_descriptor(&k_map);
            tma_prefetch_descriptor(&v_map);
            mbar_arrive_expect_tx(ring.q_full, S::kQBytes);
            load_tile<kD, S::kBlockM>(ring.smem + Plan::kQ, &q_map, ring.q_full, h, start + q0);
            for (int n = 0; n < n_tiles; ++n)
                issue_kv_tile<kD>(ring, &k_map, &v_map, n, hk, start + key_base + n * S::kBlockN);
        }
        return;
    }
    warpgroup_reg_alloc<kConsumerRegs>();

    const int row0 = 64 * (warpgroup - 1);  // this consumer's rows within the CTA tile
    const int lane = threadIdx.x % 32;
    float o[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY};  // running max of scale_log2 * s
    float l[2] = {0.0f, 0.0f};             // this thread's part of the running sum

    mbar_wait(ring.q_full, 0);
    if constexpr (!kOwnBlock) {
        // Keys 0 .. the diagonal tile, the last one, which alone is masked: key j * 128 + col
        // against query q0 + row0 + row, q0 == (n_tiles - 1) * 128.
        consume_tiles_pipelined<T, kD>(ring, ring.smem + Plan::kQ, row0, 0, n_tiles, p.scale_log2, m, l, o,
                                       [&](float (&sc)[64], int j) {
                                           if (j != n_tiles - 1) return;
                                           for_each_acc([&](int i, int r, int c) {
                                               if (acc_col(i, c) > row0 + acc_row(r)) sc[4 * i + 2 * r + c] = -INFINITY;
                                           });
                                       });
    } else {
        const OwnBlockWindows win = own_block_windows(cta, row0, p.block);
        consume_tiles_pipelined<T, kD>(ring, ring.smem + Plan::kQ, row0, 0, n_tiles, p.scale_log2, m, l, o,
                                       [&](float (&sc)[64], int j) {
                                           mask_own_block_tile<S::kBlockN>(sc, win, j * S::kBlockN);
                                       });
    }

    // Epilogue for the rows inside the sequence. Dense: out = O / l, lse = ln 2 * (m + log2 l).
    // Own block: the raw accumulator, row id token * acc_heads + h - acc_head0.
    const int t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int pos = q0 + row0 + acc_row(r);
        if (pos >= len) continue;
        const std::int64_t token = static_cast<std::int64_t>(start) + pos;
        if constexpr (kOwnBlock) {
            const std::int64_t row = token * p.acc_heads + h - p.acc_head0;
            float* dst = p.acc_o + row * kD;
#pragma unroll
            for (int i = 0; i < kD / 8; ++i)
                *reinterpret_cast<float2*>(dst + acc_col(i, 0)) =
                    make_float2(o[4 * i + 2 * r] * kWaveRefScale, o[4 * i + 2 * r + 1] * kWaveRefScale);
            if (t == 0) p.acc_ml[row] = make_float2(m[r] + kWaveRefOffset, l[r] * kWaveRefScale);
        } else {
            const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
            T* dst = static_cast<T*>(p.out) + (token * p.heads_q + h) * kD;
#pragma unroll
            for (int i = 0; i < kD / 8; ++i)
                *reinterpret_cast<std::uint32_t*>(dst + acc_col(i, 0)) =
                    pack2<T>(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
            if (t == 0) p.lse[h * p.total + token] = (m[r] + log2f(l[r])) * static_cast<float>(kLn2);
        }
    }
}

}  // namespace moba::wgmma::detail
