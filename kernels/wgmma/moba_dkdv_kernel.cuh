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
// Fused dQ (kDq != DqSum::none, the wgmma_moba_atomic entry): dkdv_kernel.cuh's 5 products over
// the gathered rows. The consumers also store dS^T into one shared dS tile, meet on a named
// barrier, and warpgroup w adds dS (64 rows x 128 keys) times column block w of K to its rows'
// fp32 dQ: the head pass's accumulator [total, pass heads, D], the rows scattered (a row's
// accumulator row comes from the producer beside its statistics). Each warpgroup stages its
// 64 x 64 fp32 product in shared memory (rows padded to 288 bytes: the fragment stores then
// meet no bank conflict), then sends it by 16-byte vector reductions (DqSum::red, the default)
// or by one 256-byte bulk reduce-add per row (DqSum::bulk: 47% slower at the 128K GQA point, 128
// small bulk operations a tile; kernels/NOTES.md). This replaces the own-block dQ and the dQ waves,
// which recompute S and dP for every (row, block) pair; keys past the block inside the 128-key
// box are masked (P = 0), since their products would now reach dQ. The sums arrive in no fixed
// order: dq is not bitwise repeatable (dk, dv are). Shared memory then holds 3 stages, one dS
// tile (its reuse waits on an mbarrier that both warpgroups' dQ products release) and the two
// staging buffers.
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
    float* dq_acc;                 // fused dQ: the pass's [total, acc_heads, D] fp32, zeroed before
    int acc_head0;                 // fused dQ: the pass's query heads [acc_head0, acc_head0 + acc_heads)
    int acc_heads;
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
// Fused dQ: 3 stages, since the dS tile and the staging take the fourth's 32 KB.
template <int kD, DqSum kDq = DqSum::none>
struct MobaDkdvPlan {
    using Base = DkdvPlan<kD>;  // tile shapes (128 keys, 64 rows) and the steps' layout
    static constexpr bool kFusedDq = kDq != DqSum::none;
    static constexpr int kStages = kFusedDq ? 3 : 4;
    static constexpr int kRows = Base::kRows;
    static constexpr std::uint32_t kK = 0;
    static constexpr std::uint32_t kV = Base::kKVBytes;
    static constexpr std::uint32_t kQ = 2 * Base::kKVBytes;                      // [kStages]
    static constexpr std::uint32_t kDO = kQ + kStages * Base::kRowBytes;          // [kStages]
    // Fused dQ: the dS tile (64 rows x 128 keys, a Q tile's layout: column block w holds
    // warpgroup w's keys), then each consumer warpgroup's 64 x 64 fp32 dQ staging, rows of 256
    // bytes padded to 288 (a warp's 8-byte fragment stores then fill each wavefront's 32 banks).
    static constexpr std::uint32_t kDS = kDO + kStages * Base::kRowBytes;
    static constexpr std::uint32_t kDSBytes = kFusedDq ? kRows * Base::kKeys * 2 : 0;
    static constexpr std::uint32_t kDQRowBytes = 64 * 4 + 32;
    static constexpr std::uint32_t kDQBytes = kFusedDq ? kRows * kDQRowBytes : 0;
    static constexpr std::uint32_t kDQ = kDS + kDSBytes;                          // [2 warpgroups]
    static constexpr std::uint32_t kStats = kDQ + 2 * kDQBytes;                   // float2 [kStages][64]
    static constexpr std::uint32_t kLimits = kStats + kStages * kRows * 8;        // int [kStages][64]
    // Fused dQ: each row's accumulator row (-1: padding), int64 [kStages][64].
    static constexpr std::uint32_t kAccRows = kLimits + kStages * kRows * 4;
    static constexpr std::uint32_t kCounts = kAccRows + (kFusedDq ? kStages * kRows * 8 : 0);  // int [kStages]
    static constexpr std::uint32_t kBars = (kCounts + 4 * kStages + 7) / 8 * 8;
    // kv_full, then full and empty of every stage; fused dQ: ds_free
    static constexpr int kNumBars = 1 + 2 * kStages + (kFusedDq ? 1 : 0);
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kBars + 8 * kNumBars + 1024;
    static_assert(kDS % 1024 == 0, "a swizzled tile starts 1024-byte aligned");
    static_assert(kDQ % 16 == 0 && kDQRowBytes % 16 == 0, "bulk copies and vector loads: 16-byte aligned");
    static_assert(kBytes <= 227 * 1024, "an H100 / H200 CTA's shared memory");
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
    std::int64_t acc;     // fused dQ: row token * acc_heads + h - acc_head0 of the accumulator
    int limit;            // last key (packed token) the row sees
};

// Advances the walk over the next (up to) 64 rows; returns how many there are (0: done) and,
// for r below that, row r. Uniform: every producer thread calls it with the same walk.
__device__ __forceinline__ int next_tile_rows(RowWalk& c, const MobaDkdvParams& p, std::int64_t list0,
                                              std::int64_t own_last, int own_tokens, int hk, int r,
                                              TileRow& row) {
    constexpr int kRows = 64;
    row = {-1, -1, INT_MAX};  // padding
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
            row.index = token * p.heads_q + h;
            row.acc = token * p.acc_heads + h - p.acc_head0;
        }
        filled += m;
        c.pos += m;
    }
    return filled;
}

// Adds a consumer warpgroup's dQ fragment (64 rows x 64 head dimensions, unscaled) to the rows'
// accumulator rows: dst0 is the accumulator advanced to the warpgroup's dimensions, acc_rows the
// tile's 64 accumulator rows (-1: padding, skipped). Staged through `buf` (64 rows of
// kDQRowBytes) between two barriers of the warpgroup's own (2 + warpgroup - 1): the first keeps
// the previous tile's readers of buf ahead of the stores, the second the stores ahead of the
// reads. Each row's accumulator row is staged too, in the row's padding (bytes 256-263), and read
// from there (1% faster at the 128K GQA point than reading the stage's; kernels/NOTES.md). bulk:
// lanes of warp 0 send rows lane and lane + 32, 256 bytes each, by the bulk copy engine (their
// earlier reduces must have read buf first). red: every thread sends 8 16-byte chunks, a warp two
// whole rows per step (coalesced 256-byte rows).
template <DqSum kDq>
__device__ __forceinline__ void send_dq(const float (&dq)[32], std::uint32_t buf, const std::int64_t* acc_rows,
                                        float* dst0, int warpgroup) {
    constexpr int kD = 128;
    constexpr std::uint32_t kRowBytes = MobaDkdvPlan<kD, kDq>::kDQRowBytes;
    const int wg_thread = threadIdx.x % 128;
    const int bar = 2 + (warpgroup - 1);
    if constexpr (kDq == DqSum::bulk)
        if (wg_thread < 32) bulk_wait_read();
    named_barrier_sync(bar, 128);
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int r = 0; r < 2; ++r)
            st_shared_v2(buf + acc_row(r) * kRowBytes + acc_col(i, 0) * 4, dq[4 * i + 2 * r], dq[4 * i + 2 * r + 1]);
    if (wg_thread < 64) st_shared_s64(buf + wg_thread * kRowBytes + 256, acc_rows[wg_thread]);
    if constexpr (kDq == DqSum::bulk) fence_proxy_async_shared();  // the stores, before the bulk copies read them
    named_barrier_sync(bar, 128);
    if constexpr (kDq == DqSum::bulk) {
        if (wg_thread < 32) {
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int row = wg_thread + 32 * half;
                const std::int64_t acc = ld_shared_s64(buf + row * kRowBytes + 256);
                if (acc >= 0) bulk_reduce_add_f32(dst0 + acc * kD, buf + row * kRowBytes, 64 * 4);
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = j * 128 + wg_thread;
            const int row = k / 16;  // 16 chunks of 16 bytes a row
            const int chunk = k % 16;
            const float4 v = ld_shared_v4(buf + row * kRowBytes + chunk * 16);
            const std::int64_t acc = ld_shared_s64(buf + row * kRowBytes + 256);
            if (acc >= 0) red_add_v4(dst0 + acc * kD + chunk * 4, v);
        }
    }
}

template <typename T, int kD, DqSum kDq = DqSum::none>
__global__ void __launch_bounds__(kThreads, 1)
    moba_dkdv_kernel(const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                     MobaDkdvParams p) {
    using Base = DkdvPlan<kD>;
    using Plan = MobaDkdvPlan<kD, kDq>;
    constexpr bool kFusedDq = Plan::kFusedDq;
    static_assert(!kFusedDq || kD == 128, "the fused dQ splits D = 128 into the two warpgroups' halves");
    constexpr int kStages = Plan::kStages;
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    auto* kv_full = reinterpret_cast<std::uint64_t*>(smem + Plan::kBars);
    std::uint64_t* full = kv_full + 1;
    std::uint64_t* empty = full + kStages;
    auto* stats = reinterpret_cast<float2*>(smem + Plan::kStats);
    auto* limits = reinterpret_cast<int*>(smem + Plan::kLimits);
    auto* counts = reinterpret_cast<int*>(smem + Plan::kCounts);
    auto* acc_rows = reinterpret_cast<std::int64_t*>(smem + Plan::kAccRows);  // fused dQ only
    std::uint64_t* ds_free = empty + kStages;                                  // fused dQ only

    // x = (slot * kv_heads + kv head of the pass) * tiles_per_block + tile: the tiles of one
    // (block, kv head) are dispatched together. They walk the same list rows in the same order
    // and add into the same dQ rows, so started together they share those reads and reductions
    // through L2. With the kv heads fastest (the order before), a (block, kv head)'s tiles were
    // spread over ~128 dispatches, about one CTA's lifetime apart: every tile fetched the rows
    // from DRAM again (ncu at the 128K GQA point: L2 hits 34%, DRAM 2.68 TB/s; kernels/NOTES.md).
    const int tile = static_cast<int>(blockIdx.x % static_cast<unsigned>(p.tiles_per_block));
    const std::int64_t slot_head = blockIdx.x / static_cast<unsigned>(p.tiles_per_block);
    const int hk_local = static_cast<int>(slot_head % p.kv_heads);
    const std::int64_t slot = slot_head / p.kv_heads;
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
        // Every consumer thread once its warpgroup's dQ product of the tile is done.
        if constexpr (kFusedDq) mbar_init(ds_free, 256);
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
                    if constexpr (kFusedDq) acc_rows[s * Plan::kRows + r] = row.index >= 0 ? row.acc : -1;
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
    // Fused dQ: this thread's keys acc_row(0) and acc_row(1) inside the block (the others' P is
    // zeroed, or their products would reach dQ).
    [[maybe_unused]] const bool key_in[2] = {key_lo + acc_row(0) < start + key_end,
                                             key_lo + acc_row(1) < start + key_end};
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
                    if constexpr (kFusedDq)
                        if (!key_in[r]) prob = 0.0f;
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
        if constexpr (kFusedDq) {
            const std::uint32_t ds_tile = smem_u32(smem + Plan::kDS);
            // The one dS tile: both warpgroups' dQ products of tile n - 1 have read it. Stored
            // before the dK product reads the same registers (PTX leaves a wgmma's A registers
            // untouchable until it is waited for).
            if (n >= 1) mbar_wait(ds_free, (n - 1) & 1);
            store_ds<kD>(ds_tile, warpgroup - 1, ads);
            // dV, then dQ, then dK (dkdv_kernel.cuh's order): the tensor cores have dV while the
            // consumers meet on the barrier, and dK while dQ is staged and sent (sent in the next
            // tile, beside its S^T and dP^T, it was 5% slower: kernels/NOTES.md).
            wgmma_fence();
            accumulate_rows<T, kD>(dv, ap, do_tile);
            wgmma_commit();
            fence_proxy_async_shared();  // the stores, before the other warpgroup's wgmma reads
            named_barrier_sync(1, 256);  // both warpgroups' keys are in the dS tile
            float dq[32];
            wgmma_fence();
            rows_by_dims<T, kD>(dq, ds_tile, smem_u32(smem + Plan::kK), warpgroup - 1);
            accumulate_rows<T, kD>(dk, ads, q_tile);
            wgmma_commit();
            wgmma_wait<1>();  // dV and dQ are done (groups complete in order); dK may still run
            fence_operands(dv);
            fence_operands(dq);
            mbar_arrive(ds_free);
            send_dq<kDq>(dq, smem_u32(smem + Plan::kDQ + (warpgroup - 1) * Plan::kDQBytes),
                         acc_rows + s * Plan::kRows, p.dq_acc + 64 * (warpgroup - 1), warpgroup);
            wgmma_wait<0>();  // dK is done: Q and dO may be overwritten
            fence_operands(dk);
            fence_operands(ads);  // dK's A fragments stay untouched until it is done
        } else {
            wgmma_fence();
            accumulate_rows<T, kD>(dv, ap, do_tile);
            accumulate_rows<T, kD>(dk, ads, q_tile);
            wgmma_commit();
            wgmma_wait<0>();
            fence_operands(dv);
            fence_operands(dk);
        }
        mbar_arrive(&empty[s]);
    }
    // The last bulk reduces must have read the staging before the CTA exits.
    if constexpr (kDq == DqSum::bulk)
        if (threadIdx.x % 128 < 32) bulk_wait_all();

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
