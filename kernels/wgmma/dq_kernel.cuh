// dQ of dense causal attention on warpgroup MMA: the forward's causal kernel (causal_kernel.cuh) with
// dO and V added. Same CTA (query head, 128-row tile, sequence), same producer / two-consumer
// split and the same K/V ring of 128-key tiles; per key tile each consumer (64 rows) computes
//   S  = Q K^T   and  dP = dO V^T          wgmma from shared memory (qk_gemm's layout)
//   P  = 2^(S * scale log2 e - lse log2 e),  dS = P (dP - Delta)           in fp32
//   dQ += dS K                             dS rounded to the dtype in registers as A, K read
//                                          MN-major (the forward's O += P V with K for V)
// and writes dQ = scale * dQ once, in the dtype: a row's dQ is owned by one CTA, so no atomics
// and a fixed order. Only the diagonal key tile is masked. The row statistics are
// kernels/moba/row_stats.hpp's ([total, Hq] float2: lse log2 e, Delta = dout . out).
// Own-block mode (kOwnBlock, the wgmma_moba backward's first dQ pass, moba_backward.cu): keys
// from the row's own MoBA block start to the row, the causal kernel's own-block windows and
// masks, the grid over the head pass's heads; with kAccum the unscaled fp32 sum goes to the
// pass's accumulator dq_acc, where the sparse waves (dq_wave_kernel.cuh) add theirs.
#pragma once

#include <cstdint>

#include "kernels/wgmma/causal_kernel.cuh"

namespace moba::wgmma::detail {

struct DqParams {
    const std::int32_t* cu_seqlens;
    const float2* stats;  // [total, Hq]: (lse * log2 e, Delta)
    void* dq;             // [total, Hq, D] in the dtype
    int heads_q;
    int group;         // Hq / Hkv
    float scale;       // softmax scale
    float scale_log2;  // softmax scale * log2(e)
    // Own-block mode only (after the dense fields).
    int block;         // MoBA block size Bs
    float* dq_acc;     // kAccum: [total, acc_heads, D] fp32, unscaled
    int acc_head0;     // the head pass: query heads [acc_head0, acc_head0 + acc_heads), the
    int acc_heads;     // grid's heads (kernels/moba/head_passes.hpp)
    int section_heads; // dense mode: query heads per L2 section (l2_sections.hpp)
};

// The forward's shared layout plus a dO tile beside Q.
template <int kD>
struct DqPlan {
    using S = TileShape<kD>;
    using Forward = SmemPlan<kD>;
    static constexpr std::uint32_t kDO = Forward::kBars;  // after Q, the K ring and the V ring
    static constexpr std::uint32_t kBars = kDO + S::kQBytes;
    // do_full, then the forward's barriers (q_full, k/v full and empty)
    static constexpr std::uint32_t kBytes = kBars + 8 * (1 + Forward::kNumBars) + 1024;
};

template <typename T, int kD, bool kOwnBlock = false, bool kAccum = false>
__global__ void __launch_bounds__(kThreads, 1)
    dq_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map,
              const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
              DqParams p, int max_tiles) {
    using S = TileShape<kD>;
    using Plan = DqPlan<kD>;
    using Forward = SmemPlan<kD>;
    extern __shared__ unsigned char smem_raw[];
    // The forward's Ring with its barriers moved past the dO tile.
    unsigned char* smem = aligned_smem(smem_raw);
    auto* do_full = reinterpret_cast<std::uint64_t*>(smem + Plan::kBars);
    const Ring ring = ring_at(smem, do_full + 1);

    // As the forward (causal_kernel.cuh's cta_rows): longest tiles first, sequences on z; own
    // block: the pass's heads, keys from the row's block start.
    static_assert(kOwnBlock || !kAccum, "only the own-block pass accumulates");
    CtaRows cta = cta_rows<S::kBlockM, kOwnBlock>(p, max_tiles);
    const int h = cta.h, start = cta.start, len = cta.len, q0 = cta.q0;
    if (q0 >= len) return;  // uniform for the whole CTA, before any barrier is used
    cta_keys<S::kBlockM, S::kBlockN, kOwnBlock>(cta, p.block);
    const int key_base = cta.key_base, n_tiles = cta.n_tiles;

    if (threadIdx.x == 0) {
        mbar_init(do_full, 1);
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
            load_tile<kD, S::kBlockM>(smem + Forward::kQ, &q_map, ring.q_full, h, start + q0);
            mbar_arrive_expect_tx(do_full, S::kQBytes);
            load_tile<kD, S::kBlockM>(smem + Plan::kDO, &do_map, do_full, h, start + q0);
            for (int n = 0; n < n_tiles; ++n)
                issue_kv_tile<kD>(ring, &k_map, &v_map, n, hk, start + key_base + n * S::kBlockN);
        }
        return;
    }
    warpgroup_reg_alloc<kConsumerRegs>();

    const int row0 = 64 * (warpgroup - 1);  // this consumer's rows within the CTA tile
    const int lane = threadIdx.x % 32;
    // The statistics of the thread's two rows (rows past the sequence: P = 0).
    float lse2[2];
    float delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int pos = q0 + row0 + acc_row(r);
        float2 st = make_float2(INFINITY, 0.0f);
        if (pos < len) st = p.stats[(static_cast<std::int64_t>(start) + pos) * p.heads_q + h];
        lse2[r] = st.x;
        delta[r] = st.y;
    }
    float dq[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) dq[i] = 0.0f;
    // Own block: which key tiles need the mask, and each row's window (causal_kernel.cuh).
    OwnBlockWindows win{};
    if constexpr (kOwnBlock) win = own_block_windows(cta, row0, p.block);

    mbar_wait(ring.q_full, 0);
    mbar_wait(do_full, 0);
    for (int n = 0; n < n_tiles; ++n) {
        const int s = n % kStages;
        const std::uint32_t full_parity = (n / kStages) & 1;
        unsigned char* k_tile = smem + Forward::kK + s * S::kKVBytes;

        float sc[64];
        float dp[64];
        mbar_wait(&ring.k_full[s], full_parity);
        qk_gemm<T, kD>(sc, smem + Forward::kQ, row0, k_tile);
        mbar_wait(&ring.v_full[s], full_parity);
        qk_gemm<T, kD>(dp, smem + Plan::kDO, row0, smem + Forward::kV + s * S::kKVBytes);
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.v_empty[s]);

        if constexpr (kOwnBlock) {
            // -inf outside the rows' windows first, then the probabilities with no compare (a
            // compare here made 1.7x the dense dQ's instructions per tile: kernels/NOTES.md).
            mask_own_block_tile<S::kBlockN>(sc, win, n * S::kBlockN);
            for_each_acc([&](int i, int r, int c) {
                const int e = 4 * i + 2 * r + c;
                const float prob = exp2_approx(fmaf(sc[e], p.scale_log2, -lse2[r]));
                dp[e] = prob * (dp[e] - delta[r]);
            });
        } else {
            const bool diagonal = n == n_tiles - 1;  // key n * 128 + col against row q0 + row0 + row
            for_each_acc([&](int i, int r, int c) {
                const int e = 4 * i + 2 * r + c;
                float prob = exp2_approx(fmaf(sc[e], p.scale_log2, -lse2[r]));
                if (diagonal && acc_col(i, c) > row0 + acc_row(r)) prob = 0.0f;
                dp[e] = prob * (dp[e] - delta[r]);
            });
        }

        std::uint32_t a[8][4];
        p_fragments<T>(a, dp);
        pv_gemm<T, kD>(dq, a, k_tile);  // dQ += dS K: K read MN-major, as V in O += P V
        __syncwarp();
        if (lane == 0) mbar_arrive(&ring.k_empty[s]);
    }

    // dQ = scale * sum dS K for the rows inside the sequence; kAccum: the unscaled fp32 sum into
    // the pass's accumulator row token * acc_heads + h - acc_head0.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int pos = q0 + row0 + acc_row(r);
        if (pos >= len) continue;
        if constexpr (kAccum) {
            const std::int64_t row = (static_cast<std::int64_t>(start) + pos) * p.acc_heads + h - p.acc_head0;
            float* acc = p.dq_acc + row * kD;
#pragma unroll
            for (int i = 0; i < kD / 8; ++i)
                *reinterpret_cast<float2*>(acc + acc_col(i, 0)) = make_float2(dq[4 * i + 2 * r], dq[4 * i + 2 * r + 1]);
            continue;
        }
        T* dst = static_cast<T*>(p.dq) + ((static_cast<std::int64_t>(start) + pos) * p.heads_q + h) * kD;
#pragma unroll
        for (int i = 0; i < kD / 8; ++i)
            *reinterpret_cast<std::uint32_t*>(dst + acc_col(i, 0)) =
                pack2<T>(dq[4 * i + 2 * r] * p.scale, dq[4 * i + 2 * r + 1] * p.scale);
    }
}

}  // namespace moba::wgmma::detail
