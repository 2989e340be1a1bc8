// The backward's shared pieces and its dQ kernels (backward.cu's header gives the whole design;
// the row statistics they read are kernels/moba/row_stats.hpp's):
//   dq_causal:   one CTA per (64-row query tile, query head, sequence) over the keys of each
//                row's causal window: from 0 (dense) or from the row's own MoBA block start.
//                Writes dq (scaled, dtype) or, when sparse waves follow, the fp32 accumulator.
//   dq_wave:     persistent CTAs over the work items of one wave of the block lists (at most
//                64 (token, head) rows of one (past block, kv head) list): the complete block's
//                keys, no mask; adds into the accumulator. A row sits in at most one list of a
//                wave, so the read-modify-write needs no atomics and the order is fixed.
//   (then kernels/moba/accumulator.hpp's finalize_dq: dq = scale * accumulator, in the dtype.)
// dQ core (dq_attend): each warp owns 16 query rows (the forward's orientation). Per 64-key
// tile: S = Q K^T and dP = dO V^T (A fragments of Q / dO re-read from shared memory each tile,
// which keeps the D = 128 instance at dq 64 + S 32 + dP 32 accumulator registers), then
// P = 2^(S * scale * log2 e - lse * log2 e), dS = P (dP - Delta) in fp32, and dq += dS K with
// dS rounded to the dtype in registers as the A operand (C fragments of key n-tiles 2kk and
// 2kk + 1 are the A fragment of k-step kk) and K read by ldmatrix.trans. K and V tiles stream
// through a two-stage cp.async ring; one barrier per key tile.
#pragma once

#include <cstdint>

#include "kernels/moba/blocks.cuh"
#include "kernels/moba/wave_items.cuh"
#include "kernels/tiled_mma/mma.cuh"

namespace moba::tiled_mma::detail {

struct BackwardShape {
    int batch;
    int heads_q;
    int heads_kv;
    int group;  // query heads per kv head
    int block;  // MoBA block size
    std::int64_t total;
    float scale;       // softmax scale
    float scale_log2;  // softmax scale * log2(e)
};

template <typename T>
struct BackwardParams {
    BackwardShape s;
    const std::int32_t* cu;  // [B+1]
    const T* q;              // [total, Hq, D]
    const T* k;              // [total, Hkv, D]
    const T* v;              // [total, Hkv, D]
    const T* out;            // [total, Hq, D]
    const T* dout;           // [total, Hq, D]
    const float* lse;        // [Hq, total], natural log
    T* dq;                   // [total, Hq, D]
    T* dk;                   // [total, Hkv, D]
    T* dv;                   // [total, Hkv, D]
    float2* stats;           // [total, Hq] workspace: (lse * log2 e, Delta)
    float* dq_acc;           // [total, acc_heads, D] workspace, unscaled (MoBA with waves only)
    int acc_head0;           // dq_acc's head pass (kernels/moba/head_passes.hpp): query heads
    int acc_heads;           // [acc_head0, acc_head0 + acc_heads); heads_q without waves
};

// Tile geometry shared by every backward kernel: 4 warps, 64-row query tiles, 64-key tiles,
// rows of kD elements cut into 16-byte chunks, XOR-swizzled (mma.cuh's swizzled()).
template <typename T, int kD>
struct BwdTile {
    static constexpr int kWarps = 4;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRows = 16 * kWarps;  // query rows per tile (16 per warp in dQ)
    static constexpr int kKeys = 16 * kWarps;  // keys per tile (16 per warp in dK/dV)
    static constexpr int kChunks = kD / 8;
    static constexpr int kTileElems = 64 * kD;
    // dQ kernels: Q, dO, K ring [2], V ring [2], then the row offsets.
    static constexpr std::size_t kDqSmemBytes =
        sizeof(T) * 6 * kTileElems + sizeof(std::int64_t) * kRows;
};

// 8-byte global -> shared copy (the row statistics), in the caller's current copy group.
__device__ __forceinline__ void copy8(void* smem, const void* global) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_address(smem)),
                 "l"(global));
}

// Rows [0, num_rows) of src (row r at src + r * stride) into a swizzled 64-row tile; rows past
// num_rows are zero-filled (nothing read).
template <typename T, int kD>
__device__ __forceinline__ void load_rows(T* dst, const T* src, std::int64_t stride, int num_rows) {
    using C = BwdTile<T, kD>;
    for (int idx = threadIdx.x; idx < 64 * C::kChunks; idx += C::kThreads) {
        const int r = idx / C::kChunks;
        const int c = idx % C::kChunks;
        const bool valid = r < num_rows;
        copy16(dst + swizzled<kD>(r, c), src + (valid ? r * stride : 0) + c * 8, valid);
    }
}

// The 64 rows of offset (element offset of the row in a and b, -1: a zero row) from a into
// dst_a and from b into dst_b: Q and dO, which share the [total, Hq, D] layout.
template <typename T, int kD>
__device__ __forceinline__ void gather_rows(T* dst_a, T* dst_b, const T* a, const T* b,
                                            const std::int64_t* offset) {
    using C = BwdTile<T, kD>;
    for (int idx = threadIdx.x; idx < 64 * C::kChunks; idx += C::kThreads) {
        const int r = idx / C::kChunks;
        const int c = idx % C::kChunks;
        const std::int64_t off = offset[r];
        const std::int64_t from = (off >= 0 ? off : 0) + c * 8;
        copy16(dst_a + swizzled<kD>(r, c), a + from, off >= 0);
        copy16(dst_b + swizzled<kD>(r, c), b + from, off >= 0);
    }
}

// ---- dQ ------------------------------------------------------------------------------------
// Keys of one dq_attend call: key j at k + j * kv_stride (same for v), 0 <= j < num_keys.
// Tiles inside every row's window [cta_max_lo, cta_min_hi] skip the mask.
template <typename T>
struct KeySpan {
    const T* k;
    const T* v;
    std::int64_t kv_stride;  // Hkv * D
    int num_keys;
    int cta_max_lo;
    int cta_min_hi;
};

// The thread's two rows (warp rows g and g + 8) against keys.k/v. lo/hi: the rows' key windows
// (inclusive). st: the rows' (lse * log2 e, Delta); a padding row has (+inf, 0), so its P is 0.
// Expects the Q and dO copy group committed (smem: Q, dO, K ring, V ring) and nothing else in
// flight; returns dq unscaled (sum of dS K) with every copy drained and shared memory free.
template <typename T, int kD>
__device__ void dq_attend(T* smem, const KeySpan<T>& keys, const int (&lo)[2], const int (&hi)[2],
                          const float2 (&st)[2], float scale_log2, float (&dq)[kD / 8][4]) {
    using C = BwdTile<T, kD>;
    using Op = MmaOp<T>;
    const T* smem_q = smem;
    const T* smem_do = smem + C::kTileElems;
    T* smem_k = smem + 2 * C::kTileElems;
    T* smem_v = smem + 4 * C::kTileElems;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int t = lane % 4;

#pragma unroll
    for (int j = 0; j < kD / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dq[j][e] = 0.0f;

    const int tiles = (keys.num_keys + C::kKeys - 1) / C::kKeys;
    if (tiles > 0) {
        load_rows<T, kD>(smem_k, keys.k, keys.kv_stride, keys.num_keys);
        load_rows<T, kD>(smem_v, keys.v, keys.kv_stride, keys.num_keys);
    }
    commit_copies();

    for (int n = 0; n < tiles; ++n) {
        const int stage = n & 1;
        const int key0 = n * C::kKeys;
        // Q, dO and K/V[n] have landed for every thread; every warp is done with tile n - 1,
        // so its stage may be refilled.
        wait_copies<0>();
        __syncthreads();
        if (n + 1 < tiles) {
            const std::int64_t next = static_cast<std::int64_t>(key0 + C::kKeys) * keys.kv_stride;
            const int left = keys.num_keys - key0 - C::kKeys;
            load_rows<T, kD>(smem_k + (stage ^ 1) * C::kTileElems, keys.k + next, keys.kv_stride,
                             left);
            load_rows<T, kD>(smem_v + (stage ^ 1) * C::kTileElems, keys.v + next, keys.kv_stride,
                             left);
        }
        commit_copies();
        const T* k_tile = smem_k + stage * C::kTileElems;
        const T* v_tile = smem_v + stage * C::kTileElems;

        // S = Q K^T, dP = dO V^T for the warp's 16 rows x 64 keys. A fragment (rows x d):
        // lanes 0-15 address rows 0-15 at chunk 2kk, lanes 16-31 the same rows at chunk
        // 2kk + 1, so the four 8x8 matrices are a0 (rows 0-7, d 0-7), a1 (rows 8-15, d 0-7),
        // a2 (rows 0-7, d 8-15), a3 (rows 8-15, d 8-15) of the 16x16 step. B fragments from
        // key-major K/V rows (no .trans): lanes 0-7 keys 16p+0..7 chunk 2kk (b0 of n-tile 2p),
        // 8-15 the same keys chunk 2kk+1 (b1 of 2p), 16-23 keys 16p+8..15 chunk 2kk (b0 of
        // 2p+1), 24-31 chunk 2kk+1 (b1 of 2p+1); each lane then holds key g, d 2t..2t+1.
        float s[C::kKeys / 8][4];
        float dp[C::kKeys / 8][4];
#pragma unroll
        for (int j = 0; j < C::kKeys / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) {
            std::uint32_t qa[4];
            std::uint32_t da[4];
            const int a_at = swizzled<kD>(16 * warp + (lane & 15), 2 * kk + (lane >> 4));
            ldmatrix_x4(qa, smem_q + a_at);
            ldmatrix_x4(da, smem_do + a_at);
#pragma unroll
            for (int p = 0; p < C::kKeys / 16; ++p) {
                const int b_at = swizzled<kD>(16 * p + (lane & 7) + ((lane >> 4) << 3),
                                              2 * kk + ((lane >> 3) & 1));
                std::uint32_t b[4];
                ldmatrix_x4(b, k_tile + b_at);
                Op::run(s[2 * p], qa, b[0], b[1]);
                Op::run(s[2 * p + 1], qa, b[2], b[3]);
                ldmatrix_x4(b, v_tile + b_at);
                Op::run(dp[2 * p], da, b[0], b[1]);
                Op::run(dp[2 * p + 1], da, b[2], b[3]);
            }
        }

        // P and dS (into dp). Element s[j][2r + e]: row g + 8r, key key0 + 8j + 2t + e.
        // Keys past num_keys were zero-filled: always masked.
        const bool masked = key0 < keys.cta_max_lo || key0 + C::kKeys - 1 > keys.cta_min_hi ||
                            key0 + C::kKeys > keys.num_keys;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
#pragma unroll
            for (int j = 0; j < C::kKeys / 8; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float prob = exp2f(s[j][2 * r + e] * scale_log2 - st[r].x);
                    if (masked) {
                        const int key = key0 + 8 * j + 2 * t + e;
                        if (key < lo[r] || key > hi[r] || key >= keys.num_keys) prob = 0.0f;
                    }
                    dp[j][2 * r + e] = prob * (dp[j][2 * r + e] - st[r].y);
                }
            }
        }

        // dq += dS K over the tile's 64 keys (k-steps of 16). B = K (keys x d) from key-major
        // rows with .trans: lanes 0-7 keys 16kk+0..7 chunk 2p (b0 of d-tile 2p), 8-15 keys
        // 16kk+8..15 chunk 2p (b1 of 2p), 16-23 keys 16kk+0..7 chunk 2p+1 (b0 of 2p+1), 24-31
        // keys 16kk+8..15 chunk 2p+1 (b1 of 2p+1); transposed, each lane holds keys 2t..2t+1
        // of column d = g, as b0/b1 need.
#pragma unroll
        for (int kk = 0; kk < C::kKeys / 16; ++kk) {
            const std::uint32_t a[4] = {Op::pack(dp[2 * kk][0], dp[2 * kk][1]),
                                        Op::pack(dp[2 * kk][2], dp[2 * kk][3]),
                                        Op::pack(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                                        Op::pack(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
            for (int p = 0; p < kD / 16; ++p) {
                std::uint32_t b[4];
                ldmatrix_x4_trans(
                    b, k_tile + swizzled<kD>(16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3),
                                             2 * p + (lane >> 4)));
                Op::run(dq[2 * p], a, b[0], b[1]);
                Op::run(dq[2 * p + 1], a, b[2], b[3]);
            }
        }
    }
    wait_copies<0>();
    __syncthreads();  // shared memory may be refilled by the caller
}

// One CTA per (64-row query tile, query head of the pass, sequence): blockIdx.x = n * acc_heads
// + h - acc_head0 with tiles taken last-first (the longest causal ranges start first),
// blockIdx.y = sequence. kDense: keys from 0 (full causal). Otherwise keys from the row's own
// MoBA block start. kAccum: write the unscaled fp32 accumulator of the pass for the sparse waves;
// else dq = scale * sum.
template <typename T, int kD, bool kDense, bool kAccum>
__global__ void __launch_bounds__(BwdTile<T, kD>::kThreads)
    dq_causal(BackwardParams<T> p, int max_tiles) {
    using C = BwdTile<T, kD>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto* q_offset = reinterpret_cast<std::int64_t*>(smem + 6 * C::kTileElems);

    const BackwardShape& s = p.s;
    const int h = p.acc_head0 + static_cast<int>(blockIdx.x % p.acc_heads);
    const int tile = max_tiles - 1 - static_cast<int>(blockIdx.x / p.acc_heads);
    const int b = blockIdx.y;
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
    gather_rows<T, kD>(smem, smem + C::kTileElems, p.q, p.dout, q_offset);
    commit_copies();

    const int warp = threadIdx.x / 32;
    const int g = (threadIdx.x % 32) / 4;
    const int t = threadIdx.x % 4;
    int lo[2];
    int hi[2];
    float2 st[2];
    std::int64_t row_id[2];
    for (int r = 0; r < 2; ++r) {
        const int pos = q0 + 16 * warp + g + 8 * r;
        lo[r] = (kDense ? 0 : pos / s.block * s.block) - key_base;
        hi[r] = pos - key_base;
        row_id[r] = pos < len ? (start + pos) * s.heads_q + h : -1;
        st[r] = row_id[r] >= 0 ? p.stats[row_id[r]] : make_float2(INFINITY, 0.0f);
    }
    const KeySpan<T> keys{p.k + ((start + key_base) * s.heads_kv + hk) * kD,
                          p.v + ((start + key_base) * s.heads_kv + hk) * kD,
                          static_cast<std::int64_t>(s.heads_kv) * kD,
                          q_end - key_base,
                          (kDense ? 0 : (q_end - 1) / s.block * s.block) - key_base,
                          q0 - key_base};
    float dq[kD / 8][4];
    dq_attend<T, kD>(smem, keys, lo, hi, st, s.scale_log2, dq);

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (row_id[r] < 0) continue;
        const std::int64_t acc_row = (start + q0 + 16 * warp + g + 8 * r) * p.acc_heads + h - p.acc_head0;
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
            if constexpr (kAccum) {
                store_pair(p.dq_acc + acc_row * kD + 8 * j + 2 * t, dq[j][2 * r],
                           dq[j][2 * r + 1]);
            } else {
                store_pair(p.dq + row_id[r] * kD + 8 * j + 2 * t, dq[j][2 * r] * s.scale,
                           dq[j][2 * r + 1] * s.scale);
            }
        }
    }
}

// Persistent CTAs over one wave's items: the item's rows (one kv head's group) against the
// complete past block of its list, unmasked; dq_acc += the partial sum.
template <typename T, int kD>
__global__ void __launch_bounds__(BwdTile<T, kD>::kThreads)
    dq_wave(BackwardParams<T> p, sparse::detail::WaveWork w) {
    using C = BwdTile<T, kD>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto* q_offset = reinterpret_cast<std::int64_t*>(smem + 6 * C::kTileElems);
    const BackwardShape& s = p.s;
    const int warp = threadIdx.x / 32;
    const int g = (threadIdx.x % 32) / 4;
    const int t = threadIdx.x % 4;
    const int first = w.wave_items[w.wave];
    const int last = w.wave_items[w.wave + 1];

    for (int item = first + static_cast<int>(blockIdx.x); item < last;
         item += static_cast<int>(gridDim.x)) {
        const sparse::detail::WaveItem it = sparse::detail::decode_item<C::kRows>(w, item, p.cu, s.batch, s.block);
        const int hk = it.hk;
        const std::int64_t key_start = it.key_start;

        // dq_attend's closing barrier: the previous item is done with q_offset.
        sparse::detail::item_row_offsets<C::kRows, C::kThreads, kD>(q_offset, w, it, s.group, s.heads_q,
                                                                   static_cast<int>(threadIdx.x));
        __syncthreads();
        gather_rows<T, kD>(smem, smem + C::kTileElems, p.q, p.dout, q_offset);
        commit_copies();

        float2 st[2];
        std::int64_t off[2];
        for (int r = 0; r < 2; ++r) {
            off[r] = q_offset[16 * warp + g + 8 * r];
            st[r] = off[r] >= 0 ? p.stats[off[r] / kD] : make_float2(INFINITY, 0.0f);
        }
        // A past block is complete and wholly before every listed row: no causal mask.
        const int lo[2] = {0, 0};
        const int hi[2] = {s.block - 1, s.block - 1};
        const KeySpan<T> keys{p.k + (key_start * s.heads_kv + hk) * kD,
                              p.v + (key_start * s.heads_kv + hk) * kD,
                              static_cast<std::int64_t>(s.heads_kv) * kD,
                              s.block,
                              0,
                              s.block - 1};
        float dq[kD / 8][4];
        dq_attend<T, kD>(smem, keys, lo, hi, st, s.scale_log2, dq);

#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (off[r] < 0) continue;
            float* dst = p.dq_acc + sparse::detail::pass_offset<kD>(off[r], s.heads_q, p.acc_head0, p.acc_heads);
#pragma unroll
            for (int j = 0; j < kD / 8; ++j) {
                float2* cell = reinterpret_cast<float2*>(dst + 8 * j + 2 * t);
                const float2 old = *cell;
                *cell = make_float2(old.x + dq[j][2 * r], old.y + dq[j][2 * r + 1]);
            }
        }
    }
}

}  // namespace moba::tiled_mma::detail
