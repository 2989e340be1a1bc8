// dK and dV of the wgmma_moba backward (moba_backward.cu): dkdv_kernel.cuh's tile steps over the
// (token, query head) rows that attended a key tile of a MoBA block, gathered, instead of every
// causal row. One CTA per (128-key tile of a MoBA block, kv head of the head pass); a block of Bs
// keys has ceil(Bs / 128) tiles, the last one partial (its keys past the block are another CTA's:
// computed, never written, and a key's dK/dV row never meets another key's).
//
// Rows, a fixed sequence (tiled_mma's backward_dkdv.cuh walks the same one, 64 rows a tile):
//   list rows: the lists (wave t, this block, this kv head) for t = 0, 1, ... (sorted: the
//              backward builds deterministic lists), every head of the group: past-block rows
//              see every key of the block;
//   own rows:  the tokens [key0, block end) of the tile's block, from the last token down,
//              every head of the group for each token; row i sees keys up to itself.
// Small terms first (the far rows before the near ones, dkdv_kernel.cuh says why). Tiles of 64
// rows may mix segments. Fixed order, no atomics: dK/dV are bitwise repeatable.
//
// 3 warpgroups, as dkdv_kernel.cuh:
//   warpgroup 0, producer: thread 0 loads the CTA's K and V tiles once (TMA); then all 128
//     threads walk the row sequence (one cursor, advanced uniformly) in tiles of 64 rows: thread
//     r finds row r (its index, statistics and causal limit), thread r + 64 the same row for
//     dO; warps 0-1 copy the tile's Q rows and warps 2-3 its dO rows by cp.async into the tile's
//     stage of a 4-stage ring, each warp its 32 rows with whole rows per instruction (the lanes
//     trade row indices by shuffles), and each thread publishes the previous tile's stage once
//     its copies of that tile landed (cp.async groups: two tiles in flight per thread). A tile of 0
//     rows ends the walk. Measured first with dkdv_kernel.cuh's 2 stages and a wait for every
//     tile's copies (the list entry, the statistics and the rows one after another): half the
//     dense dK/dV's rate; then with a row per thread (32 rows per copy instruction): 74% of it,
//     ncu counting half the global sectors and 60% of the shared wavefronts as excess
//     (kernels/NOTES.md).
//   warpgroups 1 and 2, consumers: 64 keys each, dK and dV in registers; per tile
//     S^T = K_w Q^T, dP^T = V_w dO^T, P^T = 2^(S^T scale log2 e - lse log2 e) (0 where the key
//     follows an own row), dS^T = P^T (dP^T - Delta), dV += P^T dO, dK += dS^T Q.
// Padding rows are zero Q / dO rows with zero statistics: S = dP = 0, so P = 1 and dS = 0, and
// both products add nothing.
#pragma once

#include <climits>
#include <cstdint>

#include "kernels/moba/blocks.cuh"
#include "kernels/wgmma/dkdv_kernel.cuh"

namespace moba::wgmma::detail {

struct MobaDkdvParams {
    const std::int32_t* cu_seqlens;
    const float2* stats;           // [total, Hq]: (lse * log2 e, Delta)
    const void* q;                 // [total, Hq, D] in the dtype
    const void* dout;              // [total, Hq, D] in the dtype
    void* dk;                      // [total, Hkv, D] in the dtype
    void* dv;                      // [total, Hkv, D] in the dtype
    const std::int32_t* offsets;   // the head pass's lists (block_lists.hpp); null without waves
    const std::int32_t* rows;      // token * group + h % group
    std::int64_t lists_per_wave;   // kbar_slots * kv_heads (of the pass)
    int waves;
    int kv0;                       // the pass's kv heads [kv0, kv0 + kv_heads)
    int kv_heads;
    int batch;
    int heads_q;
    int heads_kv;
    int group;                     // Hq / Hkv
    int block;                     // MoBA block size Bs
    int tiles_per_block;           // ceil(Bs / 128)
    float scale;                   // softmax scale
    float scale_log2;              // softmax scale * log2(e)
};

// Shared memory: K and V (128 keys), then a ring of kStages (Q, dO) tiles of 64 rows in
// dkdv_kernel.cuh's layout, the rows' statistics and causal limits per stage, the row count per
// stage, the barriers. Four stages: a stage's rows arrive by gathers whose latency (the list
// entry, then the copies) is about a tile's compute, so the producer runs up to three tiles ahead.
template <int kD>
struct MobaDkdvPlan {
    using Base = DkdvPlan<kD>;  // tile shapes (128 keys, 64 rows) and the steps' layout
    static constexpr int kStages = 4;
    static constexpr int kRows = Base::kRows;
    static constexpr std::uint32_t kK = 0;
    static constexpr std::uint32_t kV = Base::kKVBytes;
    static constexpr std::uint32_t kQ = 2 * Base::kKVBytes;                      // [kStages]
    static constexpr std::uint32_t kDO = kQ + kStages * Base::kRowBytes;          // [kStages]
    static constexpr std::uint32_t kStats = kDO + kStages * Base::kRowBytes;      // float2 [kStages][64]
    static constexpr std::uint32_t kLimits = kStats + kStages * kRows * 8;        // int [kStages][64]
    static constexpr std::uint32_t kCounts = kLimits + kStages * kRows * 4;       // int [kStages]
    static constexpr std::uint32_t kBars = kCounts + 4 * kStages;
    // kv_full, then full and empty of every stage
    static constexpr int kNumBars = 1 + 2 * kStages;
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kBars + 8 * kNumBars + 1024;
    static_assert(kBars % 8 == 0);
};

// The producer walks the lists and gathers (more registers than dkdv_kernel.cuh's 24); the
// consumers hold dK, dV, S^T, dP^T and the fragments. 128 * 40 + 256 * 232 = 64512.
constexpr int kMobaDkdvProducerRegs = 40;
constexpr int kMobaDkdvConsumerRegs = 232;
static_assert(fits_register_split(kMobaDkdvProducerRegs, kMobaDkdvConsumerRegs));

// The producer's walk over the row sequence: segment seg < waves is the list of wave seg,
// segment waves the own rows; seg = -1 before the first.
struct RowWalk {
    int seg;
    int pos;   // next row of the segment
    int len;   // rows of the segment
    int base;  // list segments: first entry in rows[]
};

// Row r of the next tile, as the producer threads r and r + 64 copy it.
struct TileRow {
    std::int64_t index;   // row token * Hq + h of [total, Hq, D]; -1: padding
    int limit;            // last key (packed token) the row sees
};

// Advances the walk over the next (up to) 64 rows; returns how many there are (0: done) and,
// for r below that, row r. Uniform: every producer thread calls it with the same walk.
__device__ __forceinline__ int next_tile_rows(RowWalk& c, const MobaDkdvParams& p, std::int64_t list0,
                                              std::int64_t own_last, int own_tokens, int hk, int r,
                                              TileRow& row) {
    constexpr int kRows = 64;
    row = {-1, INT_MAX};  // padding
    int filled = 0;
    while (filled < kRows) {
        if (c.pos == c.len) {
            if (c.seg >= p.waves) break;  // the own rows, last, are done
            ++c.seg;
            c.pos = 0;
            if (c.seg == p.waves) {
                c.len = p.group * own_tokens;
            } else {
                const std::int64_t l = c.seg * p.lists_per_wave + list0;
                c.base = p.offsets[l];
                c.len = p.offsets[l + 1] - c.base;
            }
            continue;
        }
        const int m = min(kRows - filled, c.len - c.pos);
        if (r >= filled && r < filled + m) {
            const int i = c.pos + (r - filled);
            std::int64_t token;
            int h;
            if (c.seg == p.waves) {  // descending tokens, every head of the group per token
                token = own_last - i / p.group;
                h = hk * p.group + i % p.group;
                row.limit = static_cast<int>(token);
            } else {
                const int entry = p.rows[c.base + i];
                token = entry / p.group;
                h = hk * p.group + entry % p.group;
            }
            const std::int64_t at = token * p.heads_q + h;
            row.index = at;
        }
        filled += m;
        c.pos += m;
    }
    return filled;
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    moba_dkdv_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                     MobaDkdvParams p) {
    using Base = DkdvPlan<kD>;
    using Plan = MobaDkdvPlan<kD>;
    constexpr int kStages = Plan::kStages;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    auto* kv_full = reinterpret_cast<std::uint64_t*>(smem + Plan::kBars);
    std::uint64_t* full = kv_full + 1;
    std::uint64_t* empty = full + kStages;
    auto* stats = reinterpret_cast<float2*>(smem + Plan::kStats);
    auto* limits = reinterpret_cast<int*>(smem + Plan::kLimits);
    auto* counts = reinterpret_cast<int*>(smem + Plan::kCounts);

    // x = (slot * tiles_per_block + tile) * kv_heads + kv head of the pass.
    const int hk_local = static_cast<int>(blockIdx.x % static_cast<unsigned>(p.kv_heads));
    const std::int64_t slot_tile = blockIdx.x / static_cast<unsigned>(p.kv_heads);
    const std::int64_t slot = slot_tile / p.tiles_per_block;
    const int tile = static_cast<int>(slot_tile % p.tiles_per_block);
    const int hk = p.kv0 + hk_local;
    const int b = sparse::chunk_sequence(p.cu_seqlens, p.batch, slot, p.block);
    const int start = p.cu_seqlens[b];
    const int len = p.cu_seqlens[b + 1] - start;
    const int j = static_cast<int>(slot - sparse::kbar_base(p.cu_seqlens, b, p.block));
    const int key0 = j * p.block + tile * Base::kKeys;  // within the sequence
    const int key_end = min((j + 1) * p.block, len);    // the block's end
    if (key0 >= key_end) return;  // a gap slot or a tile past the block: uniform, before any barrier

    if (threadIdx.x == 0) {
        mbar_init(kv_full, 1);
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&full[s], 128);   // every producer thread, once its copies landed
            mbar_init(&empty[s], 256);  // every consumer thread
        }
        mbar_init_fence();
    }
    __syncthreads();

    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        warpgroup_reg_dealloc<kMobaDkdvProducerRegs>();
        const int tid = threadIdx.x;
        if (tid == 0) {
            mbar_arrive_expect_tx(kv_full, 2 * Base::kKVBytes);
            load_tile<kD, Base::kKeys>(smem + Plan::kK, &k_map, kv_full, hk, start + key0);
            load_tile<kD, Base::kKeys>(smem + Plan::kV, &v_map, kv_full, hk, start + key0);
        }
        // Thread r < 64 finds row r (and copies its statistics and writes its limit), thread
        // r + 64 the same row for dO. A warp copies its 32 rows (rows warp_row0 ..) of Q or dO
        // with kRowsPerCopy whole rows per instruction, 16 bytes a lane: an instruction reads
        // whole 2 kD-byte rows and fills whole 128-byte lines of the tile, where a row per lane
        // read 16 bytes of each of 32 rows.
        const int r = tid % Plan::kRows;
        const int lane = tid % 32;
        const int warp_row0 = r - lane;
        const bool q_side = tid < Plan::kRows;
        constexpr int kLanesPerRow = kD / 8;  // 16-byte chunks of a row
        constexpr int kRowsPerCopy = 32 / kLanesPerRow;
        const int chunk = lane % kLanesPerRow;
        const auto* src_base = static_cast<const unsigned char*>(q_side ? p.q : p.dout);
        unsigned char* const dst_base = smem + (q_side ? Plan::kQ : Plan::kDO);
        const std::int64_t list0 = slot * p.kv_heads + hk_local;
        const std::int64_t own_last = static_cast<std::int64_t>(start) + key_end - 1;
        RowWalk walk{-1, 0, 0, 0};
        for (int n = 0;; ++n) {
            const int s = n % kStages;
            // Use n / stages of stage s waits for the consumers' release of the use before.
            if (n >= kStages) mbar_wait(&empty[s], ((n / kStages) - 1) & 1);
            TileRow row;
            const int count = next_tile_rows(walk, p, list0, own_last, key_end - key0, hk, r, row);
            if (count > 0) {
                // Padding rows (index -1) become zero Q / dO rows with zero statistics: S = 0,
                // dP = 0, so P = 1 and dS = 0 there, and both products add nothing.
#pragma unroll 4
                for (int i = 0; i < 32 / kRowsPerCopy; ++i) {
                    const int wr = i * kRowsPerCopy + lane / kLanesPerRow;  // row of the warp
                    const std::int64_t index = __shfl_sync(0xffffffffu, row.index, wr);
                    const bool valid = index >= 0;
                    cp_async16(dst_base + s * Base::kRowBytes + swizzled_chunk<Plan::kRows>(warp_row0 + wr, chunk),
                               src_base + (valid ? index * kD * 2 + chunk * 16 : 0), valid);
                }
                if (q_side) {
                    const bool valid = row.index >= 0;
                    cp_async8(stats + s * Plan::kRows + r, p.stats + (valid ? row.index : 0), valid);
                    limits[s * Plan::kRows + r] = row.limit;
                }
            }
            if (tid == 0) counts[s] = count;
            cp_async_commit_group();
            // Tile n - 1's copies have landed: fence them for wgmma and publish the stage (the
            // arrival also releases its limits and count). Every thread arrives for its own
            // copies: with one arrival per warp after __syncwarp, racecheck reported hazards
            // (kernels/NOTES.md). Tile n's stay in flight meanwhile.
            if (n >= 1) {
                cp_async_wait_group<1>();
                fence_proxy_async_shared();
                mbar_arrive(&full[(n - 1) % kStages]);
            }
            if (count == 0) {  // the end: an empty stage tells the consumers
                mbar_arrive(&full[s]);
                break;
            }
        }
        return;
    }
    warpgroup_reg_alloc<kMobaDkdvConsumerRegs>();

    const int key_lo = start + key0 + 64 * (warpgroup - 1);  // this warpgroup's first key, packed
    const std::uint32_t k_base = smem_u32(smem + Plan::kK) + 64 * (warpgroup - 1) * Base::kLineBytes;
    const std::uint32_t v_base = smem_u32(smem + Plan::kV) + 64 * (warpgroup - 1) * Base::kLineBytes;
    float dk[kD / 2];
    float dv[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) dk[i] = dv[i] = 0.0f;

    mbar_wait(kv_full, 0);
    for (int n = 0;; ++n) {
        const int s = n % kStages;
        mbar_wait(&full[s], (n / kStages) & 1);
        if (counts[s] == 0) break;
        const std::uint32_t q_tile = smem_u32(smem + Plan::kQ + s * Base::kRowBytes);
        const std::uint32_t do_tile = smem_u32(smem + Plan::kDO + s * Base::kRowBytes);
        float st[32];
        float dpt[32];
        wgmma_fence();
        keys_by_rows<T, kD>(st, k_base, q_tile);
        keys_by_rows<T, kD>(dpt, v_base, do_tile);
        wgmma_wait<1>();  // S^T is ready; dP^T may still run
        fence_operands(st);

        // (lse log2 e, Delta) of this thread's query columns acc_col(i, 0) and acc_col(i, 1) in
        // one 16-byte load; their causal limits in one 8-byte load.
        const auto* tile_stats = reinterpret_cast<const float4*>(stats + s * Plan::kRows);
        const auto* tile_limits = reinterpret_cast<const int2*>(limits + s * Plan::kRows);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float4 pair = tile_stats[acc_col(i, 0) / 2];
            const int2 limit = tile_limits[acc_col(i, 0) / 2];
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const float lse2 = c == 0 ? pair.x : pair.z;
                    float prob = exp2_approx(fmaf(st[4 * i + 2 * r + c], p.scale_log2, -lse2));
                    if (key_lo + acc_row(r) > (c == 0 ? limit.x : limit.y)) prob = 0.0f;
                    st[4 * i + 2 * r + c] = prob;
                }
        }
        wgmma_wait<0>();
        fence_operands(dpt);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float4 pair = tile_stats[acc_col(i, 0) / 2];
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int e = 4 * i + 2 * r + c;
                    dpt[e] = st[e] * (dpt[e] - (c == 0 ? pair.y : pair.w));
                }
        }

        std::uint32_t ap[4][4];
        std::uint32_t ads[4][4];
        p_fragments<T>(ap, st);
        p_fragments<T>(ads, dpt);
        wgmma_fence();
        accumulate_rows<T, kD>(dv, ap, do_tile);
        accumulate_rows<T, kD>(dk, ads, q_tile);
        wgmma_commit();
        wgmma_wait<0>();
        fence_operands(dv);
        fence_operands(dk);
        mbar_arrive(&empty[s]);
    }

    // dK = scale * sum dS^T Q, dV = sum P^T dO for this warpgroup's keys inside the block.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key_lo - start + acc_row(r);
        if (key >= key_end) continue;
        const std::int64_t at = ((static_cast<std::int64_t>(start) + key) * p.heads_kv + hk) * kD;
        T* dk_row = static_cast<T*>(p.dk) + at;
        T* dv_row = static_cast<T*>(p.dv) + at;
#pragma unroll
        for (int i = 0; i < kD / 8; ++i) {
            *reinterpret_cast<std::uint32_t*>(dk_row + acc_col(i, 0)) =
                pack2<T>(dk[4 * i + 2 * r] * p.scale, dk[4 * i + 2 * r + 1] * p.scale);
            *reinterpret_cast<std::uint32_t*>(dv_row + acc_col(i, 0)) =
                pack2<T>(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]);
        }
    }
}

}  // namespace moba::wgmma::detail
