// dK and dV of the tiled_mma backward: one CTA per (64-key tile, kv head). MoBA: the key tiles
// of each MoBA block (a block of Bs keys has ceil(Bs / 64) tiles, the last one partial when 64
// does not divide Bs); dense: the 64-key tiles of each sequence. The CTA owns its keys' dK, dV
// outright (each key tile belongs to exactly one CTA), so it writes them once, in the dtype, with
// no atomics and no reduction between CTAs.
//
// Rows. The CTA walks one fixed sequence of (token, query head) rows, every head of the kv group:
//   list rows (MoBA) the rows of the lists (wave t, this block, this kv head) for t = 0, 1, ...
//             (block_lists.hpp, sorted when deterministic): past-block rows see every key;
//   own rows  then the tokens [key0, row_end) of the key tile's block (dense: of the sequence),
//             from the last token down to key0, every head of the group for each token; row i
//             sees keys up to itself (the causal mask, applied only on the 64-row tiles that
//             hold a row with token < key0 + 63: the last ones).
// Small terms first: a key's probabilities fall roughly as 1 / (i - start + 1) with the row i,
// so the rows nearest the keys carry the largest terms of dK/dV. Added first, they make the fp32
// accumulators large before the many small terms arrive, and each of those additions then loses
// more low bits. Measured (H100, one 64K-token sequence, fp16, zero sparsity, dV error / SEMANTICS.md
// §5 bound): own rows first, ascending, head-major gave MQA 8:1 1.44 (MoBA, failed) and 0.70
// (dense), GQA 4:1 0.98 (both); this order gives 0.33 and 0.32 for both, and the dense dV's
// relative L2 error at MQA fell from 7.1e-4 to 3.5e-4 (the baseline's: 3.2e-4). Same speed.
// consecutive 64-row tiles of that sequence (a tile may mix segments: rows are independent).
// So the work is exactly the attended (row, key tile) pairs, rounded up to 64-row tiles, and a
// kv head's K/V tile is loaded once for all the heads of its group. The order is fixed, so the
// sums are deterministic.
//
// Per row tile, each warp owns 16 keys and computes with keys as the M dimension:
//   S^T = K_w Q^T, dP^T = V_w dO^T (K_w, V_w: A fragments from shared memory; Q, dO: B fragments
//   from the query-row-major tiles, no .trans), P^T = 2^(S^T * scale log2 e - lse log2 e),
//   dS^T = P^T (dP^T - Delta), then dV_w += P^T dO and dK_w += dS^T Q with P^T / dS^T rounded to
//   the dtype in registers as A fragments (their C fragments of row n-tiles 2kk, 2kk + 1 are the
//   A fragment of k-step kk) and dO / Q as B fragments by ldmatrix.trans.
// No P or dS tile goes through shared memory: the warp's products never mix keys of other warps.
// Registers: dK, dV [16 x D] fp32 per warp (64 + 64 per thread at D = 128); S^T and dP^T are
// computed in sub-tiles of kSub query rows (32 at D = 128: 16 + 16 registers; 64 at D = 64).
//
// Pipeline: K, V of the tile land once; Q, dO and the rows' statistics (8-byte cp.async of
// (lse log2 e, Delta)) stream through a two-stage ring. The row entries of tile n + 2 are read
// from the lists while tile n computes, so writing tile n + 1's row table never waits on a load.
// Two barriers per row tile.
#pragma once

#include <cstdint>

#include "kernels/tiled_mma/backward_kernels.cuh"
#include "kernels/moba/blocks.cuh"
#include "kernels/tiled_mma/mma.cuh"

namespace moba::tiled_mma::detail {

template <typename T, int kD>
struct KvTile {
    using C = BwdTile<T, kD>;
    static constexpr int kSub = kD == 128 ? 32 : 64;  // query rows per S^T / dP^T sub-tile
    // Shared memory: K, V, Q[2], dO[2] (swizzled 64 x kD tiles), then per stage and row the
    // element offset (int64), the statistics (float2) and the causal limit hi (int).
    static constexpr std::size_t kDataBytes = sizeof(T) * 6 * C::kTileElems;
    static constexpr std::size_t kSmemBytes =
        kDataBytes + 2 * C::kRows * (sizeof(std::int64_t) + sizeof(float2) + sizeof(int));
};

// The MoBA block lists as the dK/dV kernel reads them (waves = 0: none, dense).
struct ListView {
    const std::int32_t* offsets;  // list l: rows[offsets[l] .. offsets[l+1])
    const std::int32_t* rows;     // token * group + h % group
    std::int64_t lists_per_wave;  // kbar_slots * kv_heads
    int waves;
    int kv0;       // the head pass (kernels/moba/head_passes.hpp): kv heads [kv0, kv0 + kv_heads),
    int kv_heads;  // grid y of a MoBA launch
};

// Position in the CTA's row sequence: segment t in [0, waves) is the list of wave t, segment
// waves the own rows (walked last); -1 before the first. Every thread holds the same values
// (the walk is uniform).
struct RowCursor {
    int seg;
    int pos;   // next row within the segment
    int len;   // rows of the segment
    int base;  // list segments: first entry of the list in rows[]
};

// The own rows: own_tokens tokens per head starting at packed token token0, heads 0..group-1.
struct OwnRows {
    std::int64_t token0;
    int tokens;
    int group;
};

// Advances the cursor over the next (up to) 64 rows and returns how many there are (0: done).
// Thread r < 64 gets its row's entry (token * group + h % group; -1 for padding) and whether it
// is an own row. The list entry is loaded here but first used one iteration later, so the load
// overlaps a tile of compute. Uniform: every thread of the CTA must call it.
__device__ __forceinline__ int plan_tile(RowCursor& c, const ListView& lists, std::int64_t list0,
                                         const OwnRows& own, int& entry, bool& is_own) {
    constexpr int kRows = 64;
    const int r = threadIdx.x;
    entry = -1;
    is_own = false;
    int filled = 0;
    while (filled < kRows) {
        if (c.pos == c.len) {
            if (c.seg >= lists.waves) break;  // the own rows, last, are done
            ++c.seg;
            c.pos = 0;
            if (c.seg == lists.waves) {
                c.len = own.group * own.tokens;
            } else {
                const std::int64_t l = c.seg * lists.lists_per_wave + list0;
                c.base = lists.offsets[l];
                c.len = lists.offsets[l + 1] - c.base;
            }
            continue;
        }
        const int m = min(kRows - filled, c.len - c.pos);
        if (r >= filled && r < filled + m) {
            const int i = c.pos + (r - filled);
            if (c.seg == lists.waves) {
                // Descending tokens, token-major: row i is token tokens - 1 - i / group.
                entry = static_cast<int>((own.token0 + own.tokens - 1 - i / own.group) * own.group +
                                         i % own.group);
                is_own = true;
            } else {
                entry = lists.rows[c.base + i];
            }
        }
        filled += m;
        c.pos += m;
    }
    return filled;
}

template <typename T, int kD, bool kDense>
__global__ void __launch_bounds__(BwdTile<T, kD>::kThreads)
    dkdv_tile(BackwardParams<T> p, ListView lists, int tiles_per_block) {
    using C = BwdTile<T, kD>;
    using K = KvTile<T, kD>;
    using Op = MmaOp<T>;
    constexpr int kSub = K::kSub;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem_k = reinterpret_cast<T*>(smem_raw);
    T* smem_v = smem_k + C::kTileElems;
    T* smem_q = smem_v + C::kTileElems;                                            // [2] stages
    T* smem_do = smem_q + 2 * C::kTileElems;                                       // [2] stages
    auto* row_offset = reinterpret_cast<std::int64_t*>(smem_raw + K::kDataBytes);  // [2][64]
    auto* row_stat = reinterpret_cast<float2*>(row_offset + 2 * C::kRows);         // [2][64]
    auto* row_hi = reinterpret_cast<int*>(row_stat + 2 * C::kRows);                // [2][64]

    const BackwardShape& s = p.s;
    // The key tile: keys [key0, key_end) of sequence b; own rows are tokens [key0, row_end).
    int b = 0;
    int hk = 0;
    int key0 = 0;
    int key_end = 0;
    int row_end = 0;
    std::int64_t list0 = 0;  // slot * kv_heads + hk - kv0: the tile's list within each wave
    if constexpr (kDense) {
        b = blockIdx.y;
        hk = static_cast<int>(blockIdx.x % s.heads_kv);
        key0 = static_cast<int>(blockIdx.x / s.heads_kv) * C::kKeys;
        const int len = p.cu[b + 1] - p.cu[b];
        if (key0 >= len) return;
        row_end = len;
    } else {
        hk = lists.kv0 + static_cast<int>(blockIdx.y);
        const std::int64_t slot = blockIdx.x / tiles_per_block;
        const int tile = static_cast<int>(blockIdx.x % tiles_per_block);
        b = sparse::chunk_sequence(p.cu, s.batch, slot, s.block);
        const int len = p.cu[b + 1] - p.cu[b];
        const std::int64_t block_start = (slot - sparse::kbar_base(p.cu, b, s.block)) * s.block;
        if (block_start >= len) return;  // a gap slot between sequences
        row_end = static_cast<int>(min(block_start + s.block, static_cast<std::int64_t>(len)));
        key0 = static_cast<int>(block_start) + tile * C::kKeys;
        if (key0 >= row_end) return;  // a tile past a partial last block
        list0 = slot * lists.kv_heads + hk - lists.kv0;
    }
    key_end = min(key0 + C::kKeys, row_end);
    const std::int64_t key_token0 = p.cu[b] + key0;  // packed token of the tile's first key

    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int g = lane / 4;
    const int t = lane % 4;

    // K and V of the tile, once (keys past key_end zero-filled; their dK/dV rows are not stored).
    const std::int64_t kv_stride = static_cast<std::int64_t>(s.heads_kv) * kD;
    load_rows<T, kD>(smem_k, p.k + (key_token0 * s.heads_kv + hk) * kD, kv_stride, key_end - key0);
    load_rows<T, kD>(smem_v, p.v + (key_token0 * s.heads_kv + hk) * kD, kv_stride, key_end - key0);
    commit_copies();

    // Writes stage `stage`'s row table from the thread's planned row (threads r < 64), issues
    // the row's statistics copy, and returns whether any row of the tile needs the causal mask.
    // Ends with a barrier: the table is visible to every thread.
    auto write_rows = [&](int stage, int entry, bool own) -> bool {
        const int r = threadIdx.x;
        bool need_mask = false;
        if (r < C::kRows) {
            std::int64_t offset = -1;
            int hi = C::kKeys;  // keys 0..63 of the tile all seen
            float2* stat = row_stat + stage * C::kRows + r;
            if (entry >= 0) {
                const int token = entry / s.group;
                const int h = hk * s.group + entry % s.group;
                const std::int64_t row = static_cast<std::int64_t>(token) * s.heads_q + h;
                offset = row * kD;
                if (own) {
                    hi = static_cast<int>(token - key_token0);  // >= 0: own rows start at key0
                    need_mask = hi < C::kKeys - 1;
                }
                copy8(stat, p.stats + row);
            } else {
                *stat = make_float2(INFINITY, 0.0f);  // padding: P = 2^-inf = 0
            }
            row_offset[stage * C::kRows + r] = offset;
            row_hi[stage * C::kRows + r] = hi;
        }
        return __syncthreads_or(need_mask) != 0;
    };

    float dk[kD / 8][4];
    float dv[kD / 8][4];
#pragma unroll
    for (int j = 0; j < kD / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[j][e] = dv[j][e] = 0.0f;

    const int own_tokens = row_end - key0;
    RowCursor cursor{-1, 0, 0, 0};
    const OwnRows own{key_token0, own_tokens, s.group};
    int entry = -1;
    bool is_own = false;

    int count = plan_tile(cursor, lists, list0, own, entry, is_own);  // tile 0: >= 1 row
    bool mask = write_rows(0, entry, is_own);
    gather_rows<T, kD>(smem_q, smem_do, p.q, p.dout, row_offset);
    commit_copies();
    int count_next = plan_tile(cursor, lists, list0, own, entry, is_own);  // tile 1

    for (int n = 0; count > 0; ++n) {
        const int stage = n & 1;
        // Tile n (and K, V) have landed for every thread; every warp is done with tile n - 1,
        // so stage ^ 1 (data and row table) may be refilled with tile n + 1.
        wait_copies<0>();
        __syncthreads();
        bool mask_next = false;
        if (count_next > 0) {
            mask_next = write_rows(stage ^ 1, entry, is_own);
            gather_rows<T, kD>(smem_q + (stage ^ 1) * C::kTileElems,
                               smem_do + (stage ^ 1) * C::kTileElems, p.q, p.dout,
                               row_offset + (stage ^ 1) * C::kRows);
        }
        commit_copies();
        const int count_after =
            count_next > 0 ? plan_tile(cursor, lists, list0, own, entry, is_own) : 0;

        const T* q_tile = smem_q + stage * C::kTileElems;
        const T* do_tile = smem_do + stage * C::kTileElems;
        const float2* stat = row_stat + stage * C::kRows;
        const int* hi = row_hi + stage * C::kRows;
#pragma unroll 1
        for (int sub0 = 0; sub0 < C::kRows; sub0 += kSub) {
            // S^T = K_w Q^T and dP^T = V_w dO^T: 16 keys x kSub query rows. A fragments (keys x
            // d): lanes 0-15 address the warp's keys 0-15 at chunk 2kk, lanes 16-31 the same keys
            // at chunk 2kk + 1 (matrices a0 keys 0-7 d 0-7, a1 keys 8-15 d 0-7, a2 keys 0-7
            // d 8-15, a3 keys 8-15 d 8-15). B fragments (d x query rows) from row-major Q / dO
            // without .trans: lanes 0-7 rows sub0+16p+0..7 chunk 2kk (b0 of n-tile 2p), 8-15 the
            // same rows chunk 2kk+1 (b1 of 2p), 16-23 rows +8..15 chunk 2kk (b0 of 2p+1), 24-31
            // chunk 2kk+1 (b1 of 2p+1): each lane holds query row g, d 2t..2t+1.
            float st[kSub / 8][4];
            float dp[kSub / 8][4];
#pragma unroll
            for (int j = 0; j < kSub / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) st[j][e] = dp[j][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk) {
                std::uint32_t ka[4];
                std::uint32_t va[4];
                const int a_at = swizzled<kD>(16 * warp + (lane & 15), 2 * kk + (lane >> 4));
                ldmatrix_x4(ka, smem_k + a_at);
                ldmatrix_x4(va, smem_v + a_at);
#pragma unroll
                for (int pp = 0; pp < kSub / 16; ++pp) {
                    const int b_at = swizzled<kD>(sub0 + 16 * pp + (lane & 7) + ((lane >> 4) << 3),
                                                  2 * kk + ((lane >> 3) & 1));
                    std::uint32_t bq[4];
                    ldmatrix_x4(bq, q_tile + b_at);
                    Op::run(st[2 * pp], ka, bq[0], bq[1]);
                    Op::run(st[2 * pp + 1], ka, bq[2], bq[3]);
                    ldmatrix_x4(bq, do_tile + b_at);
                    Op::run(dp[2 * pp], va, bq[0], bq[1]);
                    Op::run(dp[2 * pp + 1], va, bq[2], bq[3]);
                }
            }

            // P^T into st, dS^T into dp. Element [j][e]: key 16w + g + 8 (e >> 1), query row
            // sub0 + 8j + 2t + (e & 1).
#pragma unroll
            for (int j = 0; j < kSub / 8; ++j) {
                const int col = sub0 + 8 * j + 2 * t;
                const float2 row_st[2] = {stat[col], stat[col + 1]};
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float2 rs = row_st[e & 1];
                    float prob = exp2f(st[j][e] * s.scale_log2 - rs.x);
                    if (mask && 16 * warp + g + 8 * (e >> 1) > hi[col + (e & 1)]) prob = 0.0f;
                    st[j][e] = prob;
                    dp[j][e] = prob * (dp[j][e] - rs.y);
                }
            }

            // dV_w += P^T dO, dK_w += dS^T Q over the sub-tile's query rows (k-steps of 16).
            // B fragments (query rows x d) from row-major dO / Q with .trans: lanes 0-7 rows
            // sub0+16kk+0..7 chunk 2pp (b0 of d-tile 2pp), 8-15 rows +8..15 chunk 2pp (b1 of
            // 2pp), 16-23 rows +0..7 chunk 2pp+1 (b0 of 2pp+1), 24-31 rows +8..15 chunk 2pp+1
            // (b1 of 2pp+1); transposed, each lane holds rows 2t..2t+1 of column d = g.
#pragma unroll
            for (int kk = 0; kk < kSub / 16; ++kk) {
                const std::uint32_t ap[4] = {Op::pack(st[2 * kk][0], st[2 * kk][1]),
                                             Op::pack(st[2 * kk][2], st[2 * kk][3]),
                                             Op::pack(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                                             Op::pack(st[2 * kk + 1][2], st[2 * kk + 1][3])};
                const std::uint32_t ad[4] = {Op::pack(dp[2 * kk][0], dp[2 * kk][1]),
                                             Op::pack(dp[2 * kk][2], dp[2 * kk][3]),
                                             Op::pack(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                                             Op::pack(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
                for (int pp = 0; pp < kD / 16; ++pp) {
                    const int b_at =
                        swizzled<kD>(sub0 + 16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3),
                                     2 * pp + (lane >> 4));
                    std::uint32_t bt[4];
                    ldmatrix_x4_trans(bt, do_tile + b_at);
                    Op::run(dv[2 * pp], ap, bt[0], bt[1]);
                    Op::run(dv[2 * pp + 1], ap, bt[2], bt[3]);
                    ldmatrix_x4_trans(bt, q_tile + b_at);
                    Op::run(dk[2 * pp], ad, bt[0], bt[1]);
                    Op::run(dk[2 * pp + 1], ad, bt[2], bt[3]);
                }
            }
        }
        count = count_next;
        count_next = count_after;
        mask = mask_next;
    }
    wait_copies<0>();  // nothing is left in flight (the last groups are empty)

    // dK = scale * sum dS^T Q, dV = sum P^T dO. Element [j][2r + e]: key 16w + g + 8r,
    // d = 8j + 2t + e.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key0 + 16 * warp + g + 8 * r;
        if (key >= key_end) continue;
        const std::int64_t at = ((key_token0 + key - key0) * s.heads_kv + hk) * kD;
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
            store_pair(p.dk + at + 8 * j + 2 * t, dk[j][2 * r] * s.scale,
                       dk[j][2 * r + 1] * s.scale);
            store_pair(p.dv + at + 8 * j + 2 * t, dv[j][2 * r], dv[j][2 * r + 1]);
        }
    }
}

}  // namespace moba::tiled_mma::detail
