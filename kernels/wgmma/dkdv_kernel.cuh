// dK and dV of dense causal attention on warpgroup MMA (FlashAttention-3's dK/dV shape), the
// wgmma_dense backward's replacement for tiled_mma's mma.sync dkdv_tile. dQ is dq_kernel.cuh's;
// the row statistics are kernels/moba/row_stats.hpp's.
//
// One CTA per (128-key tile, kv head, sequence), 3 warpgroups:
//   warpgroup 0, producer: one thread loads the CTA's K and V tiles once (TMA, 128 keys), then
//     streams Q and dO tiles of 64 query rows of one head into a kDkdvStages ring; warp 1 puts
//     the same rows' statistics (lse log2 e, Delta) beside them in shared memory, so the
//     consumers hold no statistics in registers across their matrix products.
//   warpgroups 1 and 2, consumers: 64 keys each, dK and dV of their keys in registers (64 x D
//     fp32 each: 128 registers a thread at D 128). Per Q/dO tile, with keys as the M dimension:
//       S^T  = K_w Q^T      wgmma m64n64, K from shared memory (A), Q K-major (B)
//       dP^T = V_w dO^T     the same with V and dO
//       P^T  = 2^(S^T * scale log2 e - lse log2 e),  dS^T = P^T (dP^T - Delta)     in fp32
//       dV  += P^T dO       P^T rounded to the dtype in registers as A, dO read MN-major (B)
//       dK  += dS^T Q       the same with dS^T and Q
//     The accumulator of S^T (keys x queries) is already the register A fragment of the k-steps
//     over queries, as P is for the forward's P V, so nothing goes through shared memory; every
//     operand tile is read by the tensor cores once per warpgroup (the mma.sync kernel re-read
//     Q and dO through ldmatrix in every warp: measured bound, NOTES.md).
// Rows: every head of the kv group, query tiles from the sequence's last down to the key tile's
// first (the causal window: rows >= key0), the group's heads inner. Small terms first: a key's
// probabilities fall with the row's distance, so the far rows come before the near ones and the
// fp32 accumulators are still small while the many small terms are added (the order tiled_mma's
// dkdv_tile measured best, commit bd70706). Fixed order: gradients are bitwise repeatable.
// GQA/MQA at short lengths: one CTA per (key tile, kv head) is too few CTAs, and the first key
// tiles walk far more rows than the last (measured: MQA 16 heads at 16K, 128 CTAs on 132 SMs,
// backward 283 TFLOP/s against 436 for MHA). The launcher then splits the group's heads into
// head_parts contiguous parts, one CTA each, and a second kernel sums the parts' fp32 dK/dV in
// part order: still a fixed order, so still bitwise repeatable.
// Fused dQ (kDq != DqSum::none, the wgmma_dense_atomic entry): FlashAttention-3's 5-product
// backward. The consumers also store dS^T (transposed by stmatrix) into shared memory, meet on a
// named barrier, and warpgroup w multiplies dS (64 rows x 128 keys) by column block w of K: dQ of
// the tile's rows and head dimensions [64 w, 64 w + 64), issued between the dV and dK products so
// that dK runs while it is summed into an fp32 buffer: by one bulk reduce of 16 KB from shared
// memory per warpgroup and tile (DqSum::bulk; finish_bulk_dq scales and rounds), or by float2
// atomics from registers (DqSum::red, slower: kernels/NOTES.md). The separate dQ kernel's S and
// dP products are not recomputed: 5 products a tile instead of 7. The sums arrive in no fixed
// order: dQ is not bitwise repeatable (dK and dV still are).
// Masks: a tile whose first query precedes the warpgroup's last key masks key > query; a tile
// reaching past the sequence masks its rows past the end (TMA reads the next sequence's rows
// or zeros there; their statistics are taken as lse = +inf, Delta = 0). A tile wholly before the
// warpgroup's keys (the first query tile for the second warpgroup) is skipped.
#pragma once

#include <cstdint>

#include "kernels/wgmma/causal_kernel.cuh"  // kThreads, register split
#include "kernels/wgmma/tile.cuh"

namespace moba::wgmma::detail {

struct DkdvParams {
    const std::int32_t* cu_seqlens;
    const float2* stats;  // [total, Hq]: (lse * log2 e, Delta = dout . out)
    void* dk;             // [total, Hkv, D] in the dtype
    void* dv;             // [total, Hkv, D] in the dtype
    // head_parts > 1: the group's heads are split over head_parts CTAs per key tile, each
    // writing its unscaled fp32 sums to partial [2][head_parts][total, Hkv, D] (dK, then dV),
    // which sum_head_parts adds in part order (dkdv_kernel.cuh's header says why).
    float* partial;
    int head_parts;
    std::int64_t total;  // tokens
    int heads_q;
    int heads_kv;
    int group;         // Hq / Hkv
    float scale;       // softmax scale
    float scale_log2;  // softmax scale * log2(e)
    int key_tiles;     // 128-key tiles of the longest sequence
    int section_slots; // head slots (kv head, part) per L2 section (l2_sections.hpp)
    // Fused dQ: the fp32 sums of dS K, zeroed before. DqSum::red: [total, Hq, D]. DqSum::bulk:
    // tiles of 64 rows, [tile][Hq][warpgroup 2][8 chunks][128 threads][4 floats] (a thread's
    // accumulator fragment in 16-byte chunks), a sequence's tiles from floor(start / 64) + b.
    float* dq_acc;
};

// How the fused dQ reaches global memory: none (no fused dQ: wgmma_dense's dK/dV), red (float2
// atomics from the consumers' registers), bulk (the fragments into shared memory, then one
// cp.reduce.async.bulk add of 16 KB per warpgroup and tile).
enum class DqSum { none, red, bulk };

// First 64-row tile of sequence b (starting at token start) in DqSum::bulk's layout: the
// sequences' tiles never overlap since floor((start + len) / 64) + b + 1 >= floor(start / 64)
// + b + ceil(len / 64).
__host__ __device__ __forceinline__ std::int64_t bulk_dq_tile0(std::int64_t start, int b) { return start / 64 + b; }

constexpr int kDkdvStages = 2;

template <int kD, DqSum kDq = DqSum::none>
struct DkdvPlan {
    static constexpr bool kFusedDq = kDq != DqSum::none;
    static constexpr int kKeys = 128;  // keys per CTA: 64 per consumer warpgroup
    static constexpr int kRows = 64;   // query rows per Q / dO tile
    static constexpr std::uint32_t kLineBytes = 128;
    static constexpr std::uint32_t kKVBytes = kKeys * kD * 2;
    static constexpr std::uint32_t kRowBytes = kRows * kD * 2;
    static constexpr std::uint32_t kK = 0;
    static constexpr std::uint32_t kV = kKVBytes;
    static constexpr std::uint32_t kQ = 2 * kKVBytes;                     // [kDkdvStages]
    static constexpr std::uint32_t kDO = kQ + kDkdvStages * kRowBytes;    // [kDkdvStages]
    static constexpr std::uint32_t kStats = kDO + kDkdvStages * kRowBytes;  // [stages][64] float2
    // kFusedDq: dS of a tile (64 rows x 128 keys, laid out as a Q tile: column block w holds
    // warpgroup w's keys), two buffers by tile parity (the kernel says why two suffice).
    static constexpr std::uint32_t kDSBytes = kRows * kKeys * 2;
    static constexpr std::uint32_t kDS = kStats + kDkdvStages * kRows * 8;
    static_assert(kDS % 1024 == 0, "a swizzled tile starts 1024-byte aligned");
    // DqSum::bulk: each consumer warpgroup's 64 x 64 fp32 dQ staged for the bulk reduce.
    static constexpr std::uint32_t kDQBytes = 64 * 64 * 4;
    static constexpr std::uint32_t kDQ = kDS + (kFusedDq ? 2 * kDSBytes : 0);
    static constexpr std::uint32_t kBars = kDQ + (kDq == DqSum::bulk ? 2 * kDQBytes : 0);
    // kv_full, then full and empty of every stage
    static constexpr int kNumBars = 1 + 2 * kDkdvStages;
    // + 1024: the dynamic shared window is aligned up to 1024 bytes at run time.
    static constexpr std::uint32_t kBytes = kBars + 8 * kNumBars + 1024;
};

// S^T (64 keys x 64 queries) = X_w Y^T for X = K or V (A, rows [64 w, 64 w + 64) of the
// 128-row key tile at x_base) and Y = Q or dO (B, the 64-row tile at y_tile), both K-major.
// Issues and commits; the caller waits.
template <typename T, int kD>
__device__ __forceinline__ void keys_by_rows(float (&d)[32], std::uint32_t x_base, std::uint32_t y_tile) {
    using Plan = DkdvPlan<kD>;
    const Sw128Descriptor x = sw128_descriptor_steps(x_base, 16, 1024);
    const Sw128Descriptor y = sw128_descriptor_steps(y_tile, 16, 1024);
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
        // kk / 4: column block; kk % 4: 32-byte step inside the swizzled 128-byte line.
        const std::uint32_t x_step = (kk / 4) * Plan::kKeys * Plan::kLineBytes + (kk % 4) * 32;
        const std::uint32_t y_step = (kk / 4) * Plan::kRows * Plan::kLineBytes + (kk % 4) * 32;
        Wgmma<T, 64>::ss(d, x.at(x_step), y.at(y_step), kk > 0 ? 1 : 0);
    }
    wgmma_commit();
}

// acc(64 keys x kD) += A(64 keys x 64 rows, registers) Y(64 rows x kD), Y = dO or Q read
// MN-major from the 64-row tile at y_tile. Issues only; the caller commits and waits.
template <typename T, int kD>
__device__ __forceinline__ void accumulate_rows(float (&acc)[kD / 2], const std::uint32_t (&a)[4][4],
                                                std::uint32_t y_tile) {
    using Plan = DkdvPlan<kD>;
    const Sw128Descriptor y = sw128_descriptor_steps(y_tile, Plan::kRows * Plan::kLineBytes, 1024);
#pragma unroll
    for (int j = 0; j < Plan::kRows / 16; ++j) Wgmma<T, kD>::rs(acc, a[j], y.at(j * 16 * Plan::kLineBytes));
}

// Stores this warpgroup's dS^T fragments (64 keys x 64 rows, the A fragments of its dK product)
// transposed into the dS tile at ds_tile: row = query, warpgroup w's keys in column block w,
// 128-byte swizzled as TMA lays out a Q tile, so that dS is the K-major A operand of dS K.
// Fragment a[j][m] is the 8 x 8 block of keys 8 (m % 2) + [0, 8) of the warp's 16 and rows
// 16 j + 8 (m / 2) + [0, 8); lane 8 m + t names row t of block m for stmatrix.
template <int kD>
__device__ __forceinline__ void store_ds(std::uint32_t ds_tile, int wg, const std::uint32_t (&a)[4][4]) {
    using Plan = DkdvPlan<kD>;  // its tile shapes, the same for every DqSum
    static_assert(Plan::kLineBytes == 128 && Plan::kRows == 64);
    const int lane = threadIdx.x % 32;
    const int warp = (threadIdx.x / 32) % 4;
    const int m = lane / 8;
    const int t = lane % 8;
    const int chunk = 2 * warp + m % 2;  // 16-byte chunk of 8 keys in the row's 128-byte line
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int row = 16 * j + 8 * (m / 2) + t;
        stmatrix_x4_trans(ds_tile + swizzled_chunk<Plan::kRows>(row, 8 * wg + chunk), a[j]);
    }
}

// dQ (64 rows x head dimensions [64 wg, 64 wg + 64)) = dS (64 rows x 128 keys, the tile at
// ds_tile, K-major) K (128 keys x those dimensions: column block wg of the key tile at k_tile,
// read MN-major). Issues and commits; the caller waits.
template <typename T, int kD>
__device__ __forceinline__ void rows_by_dims(float (&dq)[32], std::uint32_t ds_tile, std::uint32_t k_tile, int wg) {
    using Plan = DkdvPlan<kD>;  // its tile shapes, the same for every DqSum
    const Sw128Descriptor a = sw128_descriptor_steps(ds_tile, 16, 1024);
    const Sw128Descriptor b =
        sw128_descriptor_steps(k_tile + wg * Plan::kKeys * Plan::kLineBytes, Plan::kKeys * Plan::kLineBytes, 1024);
#pragma unroll
    for (int kk = 0; kk < Plan::kKeys / 16; ++kk) {
        const std::uint32_t a_step = (kk / 4) * Plan::kRows * Plan::kLineBytes + (kk % 4) * 32;
        Wgmma<T, 64>::ss_b_mn(dq, a.at(a_step), b.at(kk * 16 * Plan::kLineBytes), kk > 0 ? 1 : 0);
    }
    wgmma_commit();
}

template <typename T, int kD, DqSum kDq>
__global__ void __launch_bounds__(kThreads, 1)
    dkdv_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap do_map,
                const __grid_constant__ CUtensorMap k_map, const __grid_constant__ CUtensorMap v_map,
                DkdvParams p) {
    using Plan = DkdvPlan<kD, kDq>;
    constexpr bool kFusedDq = Plan::kFusedDq;
    static_assert(!kFusedDq || kD == 128, "the fused dQ splits D = 128 into the two warpgroups' halves");
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    auto* kv_full = reinterpret_cast<std::uint64_t*>(smem + Plan::kBars);
    std::uint64_t* full = kv_full + 1;
    std::uint64_t* empty = full + kDkdvStages;
    auto* stats = reinterpret_cast<float2*>(smem + Plan::kStats);

    // x: head slots (kv head * head_parts + part) * key tiles in L2 sections of section_slots
    // slots (l2_sections.hpp: the CTAs running together share few Q/dO streams), inside one the
    // slots fastest and key tile 0, the one with the most rows, first. Tiles on x, not grid y, so
    // 10M-token sequences launch. Sequences on z.
    const SectionSlot order = section_order(blockIdx.x, p.heads_kv * p.head_parts, p.key_tiles, p.section_slots);
    const int slot = order.head;
    const int hk = slot / p.head_parts;
    const int part = slot % p.head_parts;
    const int head0 = part * p.group / p.head_parts;  // this part's heads of the group
    const int part_heads = (part + 1) * p.group / p.head_parts - head0;
    const int b = blockIdx.z;
    const int start = p.cu_seqlens[b];
    const int len = p.cu_seqlens[b + 1] - start;
    const int key0 = order.rank * Plan::kKeys;
    if (key0 >= len) return;  // uniform for the whole CTA, before any barrier is used
    const int last_tile = (len - 1) / Plan::kRows;
    const int n_tiles = (last_tile - key0 / Plan::kRows + 1) * part_heads;
    // Tile n of the walk: query rows from (last_tile - n / part_heads) * 64, head
    // hk * group + head0 + n % part_heads.
    auto tile_row0 = [&](int n) { return (last_tile - n / part_heads) * Plan::kRows; };
    auto tile_head = [&](int n) { return hk * p.group + head0 + n % part_heads; };

    if (threadIdx.x == 0) {
        mbar_init(kv_full, 1);
        for (int s = 0; s < kDkdvStages; ++s) {
            mbar_init(&full[s], 1 + 32);  // the TMA thread and warp 1's statistics
            // One arrival per consumer thread: each thread's reads of the stage's statistics
            // (ordinary loads) are then ordered before the release by its own arrival.
            mbar_init(&empty[s], 256);
        }
        mbar_init_fence();
    }
    __syncthreads();

    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        warpgroup_reg_dealloc<kProducerRegs>();
        if (threadIdx.x == 0) {
            tma_prefetch_descriptor(&q_map);
            tma_prefetch_descriptor(&do_map);
            mbar_arrive_expect_tx(kv_full, 2 * Plan::kKVBytes);
            load_tile<kD, Plan::kKeys>(smem + Plan::kK, &k_map, kv_full, hk, start + key0);
            load_tile<kD, Plan::kKeys>(smem + Plan::kV, &v_map, kv_full, hk, start + key0);
            for (int n = 0; n < n_tiles; ++n) {
                const int s = n % kDkdvStages;
                // Use n / stages of stage s waits for the consumers' release of the use before.
                if (n >= kDkdvStages) mbar_wait(&empty[s], ((n / kDkdvStages) - 1) & 1);
                const int row0 = start + tile_row0(n);
                mbar_arrive_expect_tx(&full[s], 2 * Plan::kRowBytes);
                load_tile<kD, Plan::kRows>(smem + Plan::kQ + s * Plan::kRowBytes, &q_map, &full[s],
                                           tile_head(n), row0);
                load_tile<kD, Plan::kRows>(smem + Plan::kDO + s * Plan::kRowBytes, &do_map, &full[s],
                                           tile_head(n), row0);
            }
        } else if (threadIdx.x / 32 == 1) {
            const int lane = threadIdx.x % 32;
            for (int n = 0; n < n_tiles; ++n) {
                const int s = n % kDkdvStages;
                if (n >= kDkdvStages) mbar_wait(&empty[s], ((n / kDkdvStages) - 1) & 1);
                for (int r = lane; r < Plan::kRows; r += 32) {
                    const int pos = tile_row0(n) + r;
                    float2 st = make_float2(INFINITY, 0.0f);  // past the sequence: P = 0, dS = 0
                    if (pos < len) st = p.stats[(static_cast<std::int64_t>(start) + pos) * p.heads_q + tile_head(n)];
                    stats[s * Plan::kRows + r] = st;
                }
                mbar_arrive(&full[s]);
            }
        }
        return;
    }
    warpgroup_reg_alloc<kConsumerRegs>();

    const int key_lo = key0 + 64 * (warpgroup - 1);  // this warpgroup's first key
    const std::uint32_t k_base = smem_u32(smem + Plan::kK) + 64 * (warpgroup - 1) * Plan::kLineBytes;
    const std::uint32_t v_base = smem_u32(smem + Plan::kV) + 64 * (warpgroup - 1) * Plan::kLineBytes;
    float dk[kD / 2];
    float dv[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) dk[i] = dv[i] = 0.0f;

    mbar_wait(kv_full, 0);
    for (int n = 0; n < n_tiles; ++n) {
        const int s = n % kDkdvStages;
        const int q0 = tile_row0(n);
        // Even a tile this warpgroup skips is waited for before its release: an arrival on
        // empty[s] before full[s] completed could count toward the stage's previous use (with
        // a group of 4 heads, 4 skipped tiles cover each of the 2 stages twice), releasing a
        // stage the other warpgroup is still reading.
        mbar_wait(&full[s], (n / kDkdvStages) & 1);
        // Fused dQ: both warpgroups meet on a barrier every tile, so none skips (the masks zero
        // such a tile's P and dS).
        if (!kFusedDq && q0 + Plan::kRows - 1 < key_lo) {  // every row precedes every key: nothing attended
            mbar_arrive(&empty[s]);
            continue;
        }
        const std::uint32_t q_tile = smem_u32(smem + Plan::kQ + s * Plan::kRowBytes);
        const std::uint32_t do_tile = smem_u32(smem + Plan::kDO + s * Plan::kRowBytes);
        float st[32];
        float dpt[32];
        wgmma_fence();
        keys_by_rows<T, kD>(st, k_base, q_tile);
        keys_by_rows<T, kD>(dpt, v_base, do_tile);
        wgmma_wait<1>();  // S^T is ready; dP^T may still run
        fence_operands(st);

        // Statistics of this thread's query columns acc_col(i, 0) and acc_col(i, 1):
        // (lse log2 e, Delta) of both in one 16-byte load.
        const auto* tile_stats = reinterpret_cast<const float4*>(stats + s * Plan::kRows);
        auto column_pair = [&](int i) { return tile_stats[acc_col(i, 0) / 2]; };
        const bool mask = q0 < key_lo + 63 || q0 + Plan::kRows > len;
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const float4 pair = column_pair(i);
                    const float lse2 = c == 0 ? pair.x : pair.z;
                    float prob = exp2_approx(fmaf(st[4 * i + 2 * r + c], p.scale_log2, -lse2));
                    if (mask) {
                        const int query = q0 + acc_col(i, c);
                        if (key_lo + acc_row(r) > query || query >= len) prob = 0.0f;
                    }
                    st[4 * i + 2 * r + c] = prob;
                }
        wgmma_wait<0>();
        fence_operands(dpt);
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const int e = 4 * i + 2 * r + c;
                    const float4 pair = column_pair(i);
                    dpt[e] = st[e] * (dpt[e] - (c == 0 ? pair.y : pair.w));
                }

        std::uint32_t ap[4][4];
        std::uint32_t ads[4][4];
        p_fragments<T>(ap, st);
        p_fragments<T>(ads, dpt);
        // dS buffer n % 2: its previous use (tile n - 2) was read by both warpgroups' dQ
        // products, each waited for before that warpgroup reached tile n - 1's barrier, which
        // this warpgroup has passed. Stored before the dK product reads the same registers
        // (PTX leaves a wgmma's A registers untouchable until it is waited for).
        [[maybe_unused]] const std::uint32_t ds_tile = smem_u32(smem + Plan::kDS + (n % 2) * Plan::kDSBytes);
        if constexpr (kFusedDq) store_ds<kD>(ds_tile, warpgroup - 1, ads);
        wgmma_fence();
        accumulate_rows<T, kD>(dv, ap, do_tile);
        if constexpr (kFusedDq) {
            // dV, then dQ, then dK: the tensor cores have dV while the consumers meet on the
            // barrier, and dK while dQ is staged and sent (FlashAttention-3's order).
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
            const int head = tile_head(n);
            if constexpr (kDq == DqSum::bulk) {
                const int wg_thread = threadIdx.x % 128;
                const int bar = 2 + (warpgroup - 1);  // this warpgroup's own barrier
                const std::uint32_t dq_buf = smem_u32(smem + Plan::kDQ + (warpgroup - 1) * Plan::kDQBytes);
                if (wg_thread == 0) bulk_wait_read();  // the previous tile's reduce has read dq_buf
                named_barrier_sync(bar, 128);
#pragma unroll
                for (int j = 0; j < 8; ++j)  // chunk-major: a warp's store is 512 contiguous bytes
                    st_shared_v4(dq_buf + (j * 128 + wg_thread) * 16, dq[4 * j], dq[4 * j + 1], dq[4 * j + 2],
                                 dq[4 * j + 3]);
                fence_proxy_async_shared();  // the stores, before the bulk copy reads them
                named_barrier_sync(bar, 128);
                if (wg_thread == 0) {
                    const std::int64_t tile = bulk_dq_tile0(start, b) + q0 / Plan::kRows;
                    float* dst = p.dq_acc + ((tile * p.heads_q + head) * 2 + (warpgroup - 1)) * 64 * 64;
                    bulk_reduce_add_f32(dst, dq_buf, Plan::kDQBytes);
                }
            } else {
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int query = q0 + acc_row(r);
                    if (query >= len) continue;  // rows of the next sequence or past the tensor
                    float* row = p.dq_acc + ((static_cast<std::int64_t>(start) + query) * p.heads_q + head) * kD +
                                 64 * (warpgroup - 1);
#pragma unroll
                    for (int i = 0; i < 8; ++i)
                        atomicAdd(reinterpret_cast<float2*>(row + acc_col(i, 0)),
                                  make_float2(dq[4 * i + 2 * r], dq[4 * i + 2 * r + 1]));
                }
            }
            wgmma_wait<0>();  // dK is done: Q and dO may be overwritten
            fence_operands(dk);
            mbar_arrive(&empty[s]);
        } else {
            accumulate_rows<T, kD>(dk, ads, q_tile);
            wgmma_commit();
            wgmma_wait<0>();
            fence_operands(dv);
            fence_operands(dk);
            mbar_arrive(&empty[s]);
        }
    }

    // The last bulk reduce must have read its shared memory before the CTA exits.
    if constexpr (kDq == DqSum::bulk)
        if (threadIdx.x % 128 == 0) bulk_wait_all();

    // dK = scale * sum dS^T Q, dV = sum P^T dO, for the keys inside the sequence; with head
    // parts, this part's unscaled fp32 sums.
    const std::int64_t plane = static_cast<std::int64_t>(p.head_parts) * p.total * p.heads_kv * kD;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key_lo + acc_row(r);
        if (key >= len) continue;
        const std::int64_t at = ((static_cast<std::int64_t>(start) + key) * p.heads_kv + hk) * kD;
        if (p.head_parts > 1) {
            float* dk_row = p.partial + part * p.total * p.heads_kv * kD + at;
            float* dv_row = dk_row + plane;
#pragma unroll
            for (int i = 0; i < kD / 8; ++i) {
                *reinterpret_cast<float2*>(dk_row + acc_col(i, 0)) = make_float2(dk[4 * i + 2 * r], dk[4 * i + 2 * r + 1]);
                *reinterpret_cast<float2*>(dv_row + acc_col(i, 0)) = make_float2(dv[4 * i + 2 * r], dv[4 * i + 2 * r + 1]);
            }
            continue;
        }
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

// dK = scale * sum over parts, dV = sum over parts, in part order, two elements a thread.
template <typename T>
__global__ void sum_head_parts(DkdvParams p, std::int64_t elems) {
    const std::int64_t pair = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (2 * pair >= elems) return;
    const std::int64_t plane = static_cast<std::int64_t>(p.head_parts) * elems;
    float2 dk = make_float2(0.0f, 0.0f);
    float2 dv = make_float2(0.0f, 0.0f);
    for (int part = 0; part < p.head_parts; ++part) {
        const float2 k = reinterpret_cast<const float2*>(p.partial + part * elems)[pair];
        const float2 v = reinterpret_cast<const float2*>(p.partial + plane + part * elems)[pair];
        dk.x += k.x;
        dk.y += k.y;
        dv.x += v.x;
        dv.y += v.y;
    }
    reinterpret_cast<std::uint32_t*>(p.dk)[pair] = pack2<T>(dk.x * p.scale, dk.y * p.scale);
    reinterpret_cast<std::uint32_t*>(p.dv)[pair] = pack2<T>(dv.x, dv.y);
}

// dQ = scale * the fused dK/dV kernel's fp32 sums, rounded to the dtype; two elements a thread.
template <typename T>
__global__ void finish_atomic_dq(const float* dq_acc, void* dq, float scale, std::int64_t elems) {
    const std::int64_t pair = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (2 * pair >= elems) return;
    const float2 v = reinterpret_cast<const float2*>(dq_acc)[pair];
    reinterpret_cast<std::uint32_t*>(dq)[pair] = pack2<T>(v.x * scale, v.y * scale);
}

// The same from DqSum::bulk's layout: block (tile x, head y, sequence z), 64 rows x 128 columns.
template <typename T>
__global__ void finish_bulk_dq(const float* dq_acc, void* dq, const std::int32_t* cu_seqlens, int heads_q,
                               float scale) {
    const int b = blockIdx.z;
    const int start = cu_seqlens[b];
    const int len = cu_seqlens[b + 1] - start;
    const int q0 = blockIdx.x * 64;
    if (q0 >= len) return;
    const int head = blockIdx.y;
    const float4* tile = reinterpret_cast<const float4*>(dq_acc) +
                         ((bulk_dq_tile0(start, b) + blockIdx.x) * heads_q + head) * 2 * 8 * 128;
    for (int k = threadIdx.x; k < 2 * 8 * 128; k += blockDim.x) {
        const int wg = k / (8 * 128);
        const int j = (k / 128) % 8;  // chunk: accumulator entries 4 j .. 4 j + 3
        const int t = k % 128;        // the consumer thread whose fragment it is
        const int lane = t % 32;
        const float4 v = tile[k];
        const int col = 64 * wg + 8 * j + 2 * (lane % 4);
        const int row = 16 * (t / 32) + lane / 4;  // acc_row(0); acc_row(1) is 8 further
        T* out = static_cast<T*>(dq);
        if (q0 + row < len)
            *reinterpret_cast<std::uint32_t*>(out + ((static_cast<std::int64_t>(start) + q0 + row) * heads_q + head) * 128 + col) =
                pack2<T>(v.x * scale, v.y * scale);
        if (q0 + row + 8 < len)
            *reinterpret_cast<std::uint32_t*>(out + ((static_cast<std::int64_t>(start) + q0 + row + 8) * heads_q + head) * 128 + col) =
                pack2<T>(v.z * scale, v.w * scale);
    }
}

}  // namespace moba::wgmma::detail
