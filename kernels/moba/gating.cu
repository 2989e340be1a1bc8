// Fused gating on mma.sync tensor cores (SEMANTICS.md §2), run by both MoBA backends (tiled_mma,
// wgmma_moba): the same selection as naive gating without a [heads x tokens x blocks] score tensor. Two kernels:
//
// 1. block_means: one CTA per (block slot, kv head), 256 threads reading 16-byte vectors of K
//    (D/8 vectors per token row, 256/(D/8) token rows side by side), fp32 sums combined in a
//    fixed order (deterministic). Stores kbar split in two input-dtype terms, hi = round(kbar),
//    lo = round(kbar - hi), as [Hkv, kbar_slots, D] so a tile of blocks is one contiguous run.
//    Cost: reads K once (total * Hkv * D * 2 bytes), writes 4 * Hkv * D bytes per block.
// 2. select_topk: one CTA per (tile of query tokens of one sequence, kv head), its rows being
//    (token, query head) pairs of that kv head's group (32 rows a warp; 12 warps, 384 rows, for
//    k-1 <= 8, 8 warps for k-1 <= 16; a group of G heads gives rows/G tokens per tile, G > rows
//    splits the group). q lives in registers as mma A fragments; tiles of 64 past-block means
//    (hi and lo) stream through a 2-stage cp.async ring (XOR-swizzled rows, ldmatrix without
//    bank conflicts); each warp scores its 32 rows against 32 blocks at a time with mma.sync
//    m16n8k16 (bf16 or fp16 in, fp32 accumulate),
//    score = q.hi + q.lo. q is exact in the input dtype and hi + lo carries kbar to about
//    2^-16 (bf16) / 2^-22 (fp16) relative, so a score differs from the fp32 one by far less
//    than SEMANTICS.md §5's near-tie margin 2 (D + Bs + 1) 2^-24 sum|q||k| for the usual inputs.
//    Top-(k-1): each row has a threshold (its (k-1)-th best score, -inf until k-1 are held)
//    in registers, and lane l of the warp keeps row l's list (order: higher score first, lower
//    block index on equal scores). While a row holds fewer than k-1 entries its threshold is
//    -inf; then the (k-1)-th best score of the 32 being filtered (found by the row's four lanes
//    together) bounds it from below instead, so about k-1 of them, not 32, go on. Once every
//    row of a warp holds a full list, a half before every row's own block is filtered by one
//    maximum per (thread, row) and a vote. Blocks are visited in ascending order, so a score
//    equal to the threshold never displaces it, and "score > threshold" loses no block.
//    k-1 <= 8 (SortedList8, sorted_list.cuh): the lane's list is sorted in registers; each
//    thread writes its accumulators of the half to shared memory as they lie (-inf where the
//    general filter dropped a score), ballots tell lane l which of row l's four writers have a
//    score past the filter, and lane l reads only those and inserts row l's passing scores in
//    ascending block order (eight independent compares and selects each). k-1 in 9..16: scores
//    that pass go to a per-row candidate buffer and lane l merges them into an unordered list
//    in shared memory (a candidate replaces the entry that ranks
//    last, a rescan finds the next). A row's list changes ~(k-1) ln(n/(k-1)) times over n
//    blocks, so at block 128 (4096 blocks) some row of a warp has a candidate in nearly every
//    half: this handling, not the MMAs, sets the kernel's speed there (kernels/NOTES.md,
//    "Gating at block 128"). Tiles stop at the own block of the tile's last token (causal
//    skip); warps skip halves beyond their rows' own blocks. Cost: 2 * 2 * D FLOPs per (row,
//    past block) on tensor cores, 4 * D bytes of kbar from L2 per (256 rows, past block).
//    k-1 > 16 uses a 4-warp CTA with room for 64 list entries per row; k > 65 falls back to
//    select_passes, one warp per row rescoring all past blocks once per 32 selected (slow,
//    exact).
// Why: at 512K tokens, 16 heads, block 128 the scores are 17G (row, block) pairs (8.8 TFLOP
// with both terms); any design that writes them is bandwidth-bound many times over, and fp32
// CUDA-core dot products run at ~1/15 of the H100's bf16 tensor-core rate.
// Resources (ptxas, sm_90a, nvcc 13.0; D 128 / D 64): register lists (12 warps) 168 / 159
// registers, 40 bytes of spill at D 128 (loop-invariant addresses: 4 loads a tile, 2 a half);
// lists of 16 and of 64 190 / 148, no spills; one CTA per SM.
// Measured: kernels/NOTES.md, "Gating v2", the gating attempts after it, and "Gating at block
// 128" (what the instructions of a half go to, and each change since).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/blocks.cuh"
#include "kernels/moba/gating.hpp"
#include "kernels/moba/sorted_list.cuh"

namespace moba::sparse {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMeansThreads = 256;
constexpr int kPassesThreads = 256;
constexpr int kTileBlocks = 64;  // past blocks per shared-memory stage
constexpr int kHalfBlocks = 32;  // blocks a warp scores at once (4 mma n-fragments)
constexpr int kRowsPerWarp = 32; // two m16 fragments
// Warps of a select_topk CTA. The register-list kernel (k - 1 <= 8) runs 12 (168 registers
// each, 3 warps a scheduler: it is latency-bound, kernels/NOTES.md "Gating at block 128"); the
// shared-memory lists need more registers and run 8, and 4 for lists of up to 64.
constexpr int kTop8Warps = 12;
constexpr int kTop16Warps = 8;
constexpr int kTop64Warps = 4;

struct GatingShape {
    std::int64_t total;       // packed tokens
    std::int64_t kbar_slots;  // total / Bs + B
    int batch;
    int heads_q;
    int heads_kv;
    int group;  // query heads per kv head
    int block;  // MoBA block size Bs
    int topk;
    int slots;  // width of a selection row
};

template <typename T>
struct GatingParams {
    GatingShape s;
    const std::int32_t* cu;  // [B+1]
    const T* q;              // [total, Hq, D]
    const T* k;              // [total, Hkv, D]
    T* kbar_hi;              // [Hkv, kbar_slots, D] workspace
    T* kbar_lo;              // [Hkv, kbar_slots, D] workspace
    std::int32_t* sel;       // [total, Hq, slots]
    int tile_tokens;         // query tokens per select_topk CTA
    int tile_heads;          // query heads per select_topk CTA
    int head_chunks;         // select_topk CTAs per kv head (blockIdx.y = hk * chunks + chunk)
};

// ---- dtype helpers --------------------------------------------------------------------------
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ T round_to(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 round_to<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half round_to<__half>(float x) {
    return __float2half_rn(x);
}

// The two elements packed in a 32-bit word (lower address in the low half) as floats.
template <typename T>
__device__ __forceinline__ float2 unpack2(std::uint32_t bits) {
    if constexpr (std::is_same_v<T, __half>) {
        __half2 v;
        std::memcpy(&v, &bits, sizeof(v));
        return __half22float2(v);
    } else {
        __nv_bfloat162 v;
        std::memcpy(&v, &bits, sizeof(v));
        return __bfloat1622float2(v);
    }
}

// ---- PTX wrappers -----------------------------------------------------------------------------
__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; src_bytes 0 zero-fills the destination without reading.
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a * b for one m16n8k16 fragment, fp32 accumulate.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4],
                                          std::uint32_t b0, std::uint32_t b1) {
    if constexpr (std::is_same_v<T, __half>) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// Sorts eight values descending in place (Batcher's odd-even merge network, 19 exchanges).
__device__ __forceinline__ void sort8_descending(float (&v)[8]) {
    constexpr int kPairs[19][2] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {0, 2}, {1, 3}, {4, 6},
                                   {5, 7}, {1, 2}, {5, 6}, {0, 4}, {1, 5}, {2, 6}, {3, 7},
                                   {2, 4}, {3, 5}, {1, 2}, {3, 4}, {5, 6}};
#pragma unroll
    for (const auto& pair : kPairs) {
        const float a = v[pair[0]];
        const float b = v[pair[1]];
        v[pair[0]] = fmaxf(a, b);
        v[pair[1]] = fminf(a, b);
    }
}

// The n-th largest (n >= 1, counting equal values separately) of the 32 values a quad of lanes
// holds, eight each; -inf where fewer than n values are finite. Every lane of the quad returns
// it. Used as a second, exact filter: when a row scores 32 blocks at once and n of them reach
// t, no block of that half below t can be among the row's n best, so only scores >= t need to
// enter the (serial, per-lane) list merge. Cost: one sort of 8 and at most kMaxN rounds of
// "pop the quad's largest head", all warp-uniform.
template <int kMaxN>
__device__ __forceinline__ float quad_nth_largest(float (&v)[8], int n) {
    sort8_descending(v);
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const unsigned quad_shift = static_cast<unsigned>(lane & ~3);
    float t = -INFINITY;
    int count = 0;
#pragma unroll 1
    for (int round = 0; round < kMaxN && round < n; ++round) {
        float m = fmaxf(v[0], __shfl_xor_sync(kFullMask, v[0], 1));
        m = fmaxf(m, __shfl_xor_sync(kFullMask, m, 2));
        const bool pop = v[0] == m;
        const int popped = __popc((__ballot_sync(kFullMask, pop) >> quad_shift) & 0xfu);
        if (count < n) {
            t = m;
            count += popped;
        }
        if (pop) {
#pragma unroll
            for (int j = 0; j < 7; ++j) v[j] = v[j + 1];
            v[7] = -INFINITY;
        }
    }
    return count >= n && t == t ? t : -INFINITY;  // NaN scores: no bound
}

// The entry of an unordered list of n entries (1 <= n <= kN) that ranks last: its index, score
// and block. Reads the list eight entries at a time without a branch inside a group (indices
// from n on read entry n - 1 again, which never displaces it), so a group's loads issue together;
// the per-entry `break` this replaced made each compare wait for its own shared load (ncu at
// FlashMoBA's setting: short_sb stalls on every compare of the rescan).
template <int kN>
__device__ __forceinline__ void find_worst(const float* list_score, const int* list_block, int n,
                                           int& worst_at, float& worst_score, int& worst_block) {
    constexpr int kGroup = 8;
    worst_at = 0;
    worst_score = list_score[0];
    worst_block = list_block[0];
#pragma unroll 1
    for (int j0 = 0; j0 < kN; j0 += kGroup) {
        if (j0 >= n) break;
        float score[kGroup];
        int block[kGroup];
#pragma unroll
        for (int j = 0; j < kGroup; ++j) {
            const int at = min(j0 + j, n - 1);
            score[j] = list_score[at];
            block[j] = list_block[at];
        }
#pragma unroll
        for (int j = 0; j < kGroup; ++j) {
            if (ranks_before(worst_score, worst_block, score[j], block[j])) {
                worst_at = min(j0 + j, n - 1);
                worst_score = score[j];
                worst_block = block[j];
            }
        }
    }
}

// Writes the row of a query whose k covers every block up to its own: 0..own, -1 padding.
__device__ __forceinline__ void write_all_blocks(std::int32_t* out, int own, int slots) {
    for (int t = 0; t < slots; ++t) out[t] = t <= own ? t : -1;
}

// ---- kernel 1: block means ----------------------------------------------------------------
// kbar[slot, hk, :] = mean over the block's tokens of k[t, hk, :] in fp32, stored as hi + lo.
template <typename T, int D>
__global__ void __launch_bounds__(kMeansThreads) block_means(GatingParams<T> p) {
    constexpr int kVecs = D / 8;                    // 16-byte vectors per token row
    constexpr int kLanes = kMeansThreads / kVecs;   // token rows summed side by side
    __shared__ float partial[kLanes][D];

    const GatingShape& s = p.s;
    const int hk = static_cast<int>(blockIdx.x % static_cast<unsigned>(s.heads_kv));
    const std::int64_t slot = blockIdx.x / static_cast<unsigned>(s.heads_kv);
    const int b = chunk_sequence(p.cu, s.batch, slot, s.block);
    const std::int64_t start = p.cu[b];
    const std::int64_t len = p.cu[b + 1] - start;
    const std::int64_t t0 = (slot - kbar_base(p.cu, b, s.block)) * s.block;
    if (t0 >= len) return;  // a gap slot between two sequences: never read
    const int count = static_cast<int>(len - t0 < s.block ? len - t0 : s.block);

    const int vec = static_cast<int>(threadIdx.x) % kVecs;
    const int lane_row = static_cast<int>(threadIdx.x) / kVecs;
    const std::int64_t row_stride = static_cast<std::int64_t>(s.heads_kv) * D;
    const T* src = p.k + ((start + t0) * s.heads_kv + hk) * D + vec * 8;
    float acc[8] = {};
#pragma unroll 4
    for (int t = lane_row; t < count; t += kLanes) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(src + t * row_stride));
        const std::uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            const float2 f = unpack2<T>(words[w]);
            acc[2 * w] += f.x;
            acc[2 * w + 1] += f.y;
        }
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) partial[lane_row][vec * 8 + e] = acc[e];
    __syncthreads();

    T* hi = p.kbar_hi + (static_cast<std::int64_t>(hk) * s.kbar_slots + slot) * D;
    T* lo = p.kbar_lo + (static_cast<std::int64_t>(hk) * s.kbar_slots + slot) * D;
    for (int d = static_cast<int>(threadIdx.x); d < D; d += kMeansThreads) {
        float sum = 0.0f;
        for (int r = 0; r < kLanes; ++r) sum += partial[r][d];
        const float mean = sum / static_cast<float>(count);
        const T h = round_to<T>(mean);
        hi[d] = h;
        lo[d] = round_to<T>(mean - to_float(h));  // the difference is exact in fp32
    }
}

// ---- kernel 2: tensor-core scores and a running top-(k-1) per row --------------------------
// Shared memory of one select_topk CTA (byte offsets).
template <int D, int kWarps, int kCap>
struct SelectLayout {
    static constexpr int kThreads = kWarps * kWarp;
    static constexpr int kRows = kWarps * kRowsPerWarp;
    static constexpr int kStages = 2;
    static constexpr int kRowBytes = D * 2;                      // one block mean row
    static constexpr int kChunksPerRow = kRowBytes / 16;         // 16-byte chunks
    static constexpr int kTermBytes = kTileBlocks * kRowBytes;   // hi or lo of one tile
    static constexpr int kStageBytes = 2 * kTermBytes;
    // Register-list kernels (kCap 8) keep no list or candidates in shared memory: only the
    // blocks of the final list (list_block) and the dump below. The other buffers would cost
    // the 12-warp CTA 110 KB it does not have.
    static constexpr bool kRegisterList = kCap == SortedList8::kEntries;
    static constexpr int kListStride = kCap + 1;      // odd: lane-per-row access conflict-free
    static constexpr int kCandStride = kHalfBlocks + 1;
    static constexpr int kSharedListRows = kRegisterList ? 0 : kRows;
    static constexpr int kListScore = kStages * kStageBytes;
    static constexpr int kListBlock = kListScore + kSharedListRows * kListStride * 4;
    static constexpr int kCandScore = kListBlock + kRows * kListStride * 4;
    static constexpr int kCandBlock = kCandScore + kSharedListRows * kCandStride * 4;
    static constexpr int kCandCount = kCandBlock + kSharedListRows * kCandStride * 4;
    // Register-list kernels: each thread writes its accumulators of a half here as they lie in
    // its registers, one 16-byte store per (mf, nf) fragment: [warp][mf][nf][lane] float4.
    static constexpr int kDumpFragmentFloats = kWarp * 4;  // one (mf, nf) slot of a warp
    static constexpr int kDumpWarpFloats = 2 * 4 * kDumpFragmentFloats;
    static constexpr int kDump = (kCandCount + kSharedListRows * 4 + 15) / 16 * 16;
    static constexpr int kBytes = kDump + (kRegisterList ? kWarps * kDumpWarpFloats * 4 : 0);
    static_assert(kBytes <= 227 * 1024, "select_topk exceeds the shared memory of an SM");
};

// Row r of a CTA is (token tok0 + r / tile_heads, query head head0 + r % tile_heads).
struct TileRows {
    std::int64_t seq_start;  // packed index of the sequence's first token
    int tok0;                // first token of the tile within the sequence
    int tokens;              // tokens of the tile (the last tile of a sequence may be short)
    int head0;               // first query head of the CTA
    int heads;               // query heads of the CTA
    int tile_heads;          // row stride between tokens

    __device__ bool valid(int r) const { return r / tile_heads < tokens && r % tile_heads < heads; }
    // Own block of row r; -1 for a row past the tile's tokens or heads.
    __device__ int own(int r, int block) const {
        return valid(r) ? (tok0 + r / tile_heads) / block : -1;
    }
    __device__ std::int64_t pair(int r, int heads_q) const {  // token * Hq + head
        return (seq_start + tok0 + r / tile_heads) * heads_q + head0 + r % tile_heads;
    }
};

template <typename T, int D, int kWarps, int kCap>
__global__ void __launch_bounds__(kWarps* kWarp, 1) select_topk(GatingParams<T> p) {
    using L = SelectLayout<D, kWarps, kCap>;
    constexpr int kSteps = D / 16;  // k16 steps of the dot products
    extern __shared__ __align__(128) unsigned char smem[];

    const GatingShape& s = p.s;
    const int warp = static_cast<int>(threadIdx.x) / kWarp;
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int g = lane / 4;  // fragment row within 8
    const int c = lane % 4;  // fragment column pair

    // Heaviest tiles (latest in their sequence) first: blockIdx.x counts down the tiles.
    const std::int64_t tiles = chunk_count(s.total, p.tile_tokens, s.batch);
    const std::int64_t tile = tiles - 1 - static_cast<std::int64_t>(blockIdx.x);
    const int b = chunk_sequence(p.cu, s.batch, tile, p.tile_tokens);
    const int len = p.cu[b + 1] - p.cu[b];
    const std::int64_t tok0 = (tile - chunk_base(p.cu, b, p.tile_tokens)) * p.tile_tokens;
    if (tok0 >= len) return;  // gap tile between sequences
    const int hk = static_cast<int>(blockIdx.y) / p.head_chunks;
    const int group_end = (hk + 1) * s.group;
    TileRows rows{};
    rows.seq_start = p.cu[b];
    rows.tok0 = static_cast<int>(tok0);
    rows.tokens = min(p.tile_tokens, len - rows.tok0);
    rows.head0 = hk * s.group + (static_cast<int>(blockIdx.y) % p.head_chunks) * p.tile_heads;
    rows.heads = min(p.tile_heads, group_end - rows.head0);
    rows.tile_heads = p.tile_heads;

    const int past = s.topk - 1;  // past blocks a row may add to its own
    // No row scores a block at or beyond the own block of the tile's last token.
    const int n_score = (rows.tok0 + rows.tokens - 1) / s.block;
    const int lane_row = warp * kRowsPerWarp + lane;  // the row this lane merges and writes
    const int lane_own = rows.own(lane_row, s.block);
    float* list_score = reinterpret_cast<float*>(smem + L::kListScore) + lane_row * L::kListStride;
    int* list_block = reinterpret_cast<int*>(smem + L::kListBlock) + lane_row * L::kListStride;
    int held = 0;  // entries of this lane's row list (unordered)
    constexpr bool kRegisterList = L::kRegisterList;  // the lane's list in registers
    SortedList8 reg_list;
    reg_list.clear(past);
    int worst_at = 0;  // once held == past: the entry that ranks last, its score and block
    float worst_score = -INFINITY;
    int worst_block = INT_MAX;

    if (past > 0 && past < n_score) {  // CTA-uniform; otherwise every row takes all its blocks
        float* cand_score = reinterpret_cast<float*>(smem + L::kCandScore);
        int* cand_block = reinterpret_cast<int*>(smem + L::kCandBlock);
        int* cand_count = reinterpret_cast<int*>(smem + L::kCandCount);
        if constexpr (!kRegisterList) cand_count[lane_row] = 0;

        // The thread's four fragment rows: i = 2 * mf + hh is row mf*16 + hh*8 + g of the warp.
        float threshold[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        int warp_own = lane_own;      // largest own block among the warp's rows
        int warp_min_own = lane_own;  // smallest (-1 where the warp has a row past the tile)
#pragma unroll
        for (int offset = kWarp / 2; offset > 0; offset /= 2) {
            warp_own = max(warp_own, __shfl_xor_sync(kFullMask, warp_own, offset));
            warp_min_own = min(warp_min_own, __shfl_xor_sync(kFullMask, warp_min_own, offset));
        }
        bool lists_full = false;  // warp-uniform: every row of the warp holds past entries

        // q as A fragments: a[mf][step] = rows (g, g+8) x columns (2c, 2c+1, 2c+8, 2c+9).
        std::uint32_t a[2][kSteps][4];
#pragma unroll
        for (int mf = 0; mf < 2; ++mf) {
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int r = warp * kRowsPerWarp + mf * 16 + hh * 8 + g;
                const bool valid = rows.valid(r);
                const T* q_row = p.q + (valid ? rows.pair(r, s.heads_q) : 0) * D + 2 * c;
#pragma unroll
                for (int step = 0; step < kSteps; ++step) {
#pragma unroll
                    for (int kh = 0; kh < 2; ++kh) {
                        a[mf][step][hh + 2 * kh] =
                            valid ? __ldg(reinterpret_cast<const unsigned*>(q_row + step * 16 +
                                                                           kh * 8))
                                  : 0u;
                    }
                }
            }
        }

        // Block means of this sequence and kv head: row j = block j.
        const std::int64_t kbar_row0 =
            static_cast<std::int64_t>(hk) * s.kbar_slots + kbar_base(p.cu, b, s.block);
        const T* hi = p.kbar_hi + kbar_row0 * D;
        const T* lo = p.kbar_lo + kbar_row0 * D;
        // A tile is 2 * kTileBlocks rows (hi's blocks, then lo's, contiguous in the stage) of
        // kChunksPerRow 16-byte chunks. A thread copies one chunk column of every kLoadRows-th
        // row, kLoadRows a multiple of 8, so its XOR swizzle (chunk ^ row % 8) and shared offset
        // stay fixed: per copy only the source moves. (Deriving term, row and chunk from a flat
        // index took ~28 instructions and four spilled values a copy in the 12-warp kernel.)
        constexpr int kLoadRows = L::kThreads / L::kChunksPerRow;
        static_assert(L::kThreads % L::kChunksPerRow == 0 && kLoadRows % 8 == 0,
                      "a thread's tile rows must keep one swizzle");
        const int load_chunk = static_cast<int>(threadIdx.x) % L::kChunksPerRow;
        const int load_row0 = static_cast<int>(threadIdx.x) / L::kChunksPerRow;
        const std::uint32_t load_offset =
            load_row0 * L::kRowBytes + ((load_chunk ^ (load_row0 & 7)) << 4);
        const std::ptrdiff_t lo_minus_hi = lo - hi;
        auto load_tile = [&](int t) {
            const std::uint32_t stage = smem_addr(smem) + (t & 1) * L::kStageBytes;
            const int tile_block0 = t * kTileBlocks;
#pragma unroll
            for (int it = 0; it < (2 * kTileBlocks + kLoadRows - 1) / kLoadRows; ++it) {
                const int row = load_row0 + it * kLoadRows;
                // Only a round that straddles the tile's end or the hi/lo boundary tests its row
                // at run time; the others decide at compile time.
                if ((it + 1) * kLoadRows > 2 * kTileBlocks && row >= 2 * kTileBlocks) break;
                const bool term_lo = it * kLoadRows >= kTileBlocks ||
                                     ((it + 1) * kLoadRows > kTileBlocks && row >= kTileBlocks);
                const int blk = tile_block0 + row - (term_lo ? kTileBlocks : 0);
                const bool live = blk < n_score;
                const T* src = live ? hi + (term_lo ? lo_minus_hi : 0) +
                                          static_cast<std::int64_t>(blk) * D + load_chunk * 8
                                    : hi;
                cp_async_16(stage + load_offset + it * kLoadRows * L::kRowBytes, src,
                            live ? 16 : 0);
            }
            cp_async_commit();
        };

        // ldmatrix.x4 addressing: lanes 8m..8m+7 give the rows of matrix m; matrices 0/1 are
        // the k-low/k-high halves of blocks n0..n0+7, matrices 2/3 those of blocks n0+8..15.
        const int ld_matrix = lane / 8;
        const int ld_row = lane % 8;
        const int ld_row_bytes = ((ld_matrix / 2) * 8 + ld_row) * L::kRowBytes;
        const int ld_khalf = ld_matrix % 2;

        const int tiles_to_score = (n_score + kTileBlocks - 1) / kTileBlocks;
        load_tile(0);
        for (int t = 0; t < tiles_to_score; ++t) {
            if (t + 1 < tiles_to_score) {
                load_tile(t + 1);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            const std::uint32_t stage = smem_addr(smem) + (t & 1) * L::kStageBytes;
#pragma unroll 1
            for (int half = 0; half < kTileBlocks / kHalfBlocks; ++half) {
                const int first = t * kTileBlocks + half * kHalfBlocks;  // block of column 0
                if (first >= warp_own) break;  // warp-uniform: no row of the warp needs more

                float acc[2][4][4] = {};
#pragma unroll
                for (int step = 0; step < kSteps; ++step) {
                    std::uint32_t bh[2][4];
                    std::uint32_t bl[2][4];
#pragma unroll
                    for (int np = 0; np < 2; ++np) {
                        const std::uint32_t addr =
                            stage + (half * kHalfBlocks + np * 16) * L::kRowBytes + ld_row_bytes +
                            (((2 * step + ld_khalf) ^ ld_row) << 4);
                        ldmatrix_x4(bh[np], addr);
                        ldmatrix_x4(bl[np], addr + L::kTermBytes);
                    }
#pragma unroll
                    for (int mf = 0; mf < 2; ++mf) {
#pragma unroll
                        for (int nf = 0; nf < 4; ++nf) {
                            const int np = nf / 2;
                            const int o = (nf % 2) * 2;
                            mma_16816<T>(acc[mf][nf], a[mf][step], bh[np][o], bh[np][o + 1]);
                            mma_16816<T>(acc[mf][nf], a[mf][step], bl[np][o], bl[np][o + 1]);
                        }
                    }
                }

                // Steady state (ncu at FlashMoBA's block 128: nearly every half): every row of the
                // warp holds a full list, so no floor is needed, and every column of the half is a
                // past block of every row, so no causal limit either. One maximum per (thread,
                // row) and a vote then say whether any score passes; only rows with one build
                // their bits. The general filter below took ~230 instructions a half there.
                unsigned pass = 0;
                unsigned rows_hit = 0;  // steady state: bit i, the thread's row i has a score past
                const bool steady = lists_full && first + kHalfBlocks <= warp_min_own;
                if (steady) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const float(&x)[4][4] = acc[i / 2];
                        const int h = (i % 2) * 2;
                        const float best =
                            fmaxf(fmaxf(fmaxf(x[0][h], x[0][h + 1]), fmaxf(x[1][h], x[1][h + 1])),
                                  fmaxf(fmaxf(x[2][h], x[2][h + 1]), fmaxf(x[3][h], x[3][h + 1])));
                        rows_hit |= static_cast<unsigned>(best > threshold[i]) << i;
                    }
                    if (!__any_sync(kFullMask, rows_hit != 0)) continue;
                    if constexpr (!kRegisterList) {  // register lists filter in the owner lane
#pragma unroll
                        for (int i = 0; i < 4; ++i) {
                            if (((rows_hit >> i) & 1u) == 0) continue;
#pragma unroll
                            for (int nf = 0; nf < 4; ++nf) {
#pragma unroll
                                for (int e = 0; e < 2; ++e) {
                                    const float score = acc[i / 2][nf][(i % 2) * 2 + e];
                                    const bool hit = score > threshold[i];
                                    pass |= static_cast<unsigned>(hit) << ((i * 4 + nf) * 2 + e);
                                }
                            }
                        }
                    }
                } else {
                    // The own blocks of the thread's rows, fetched here (a warp-uniform branch)
                    // rather than held: the 12-warp kernel has no registers to spare.
                    int own[4];
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        own[i] = __shfl_sync(kFullMask, lane_own, (i / 2) * 16 + (i % 2) * 8 + g);
                    }
                    // While a row's list is not full its threshold is -inf and every past block
                    // would be a candidate (32 per row in its first half: most of the merge work).
                    // Then bound the row from below by the past-th best score of this half.
                    float floor_of_half[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
                    if (past < kHalfBlocks &&
                        __any_sync(kFullMask,
                                   threshold[0] == -INFINITY || threshold[1] == -INFINITY ||
                                       threshold[2] == -INFINITY || threshold[3] == -INFINITY)) {
#pragma unroll
                        for (int i = 0; i < 4; ++i) {
                            const int limit = own[i] - first;
                            float v[8];
#pragma unroll
                            for (int nf = 0; nf < 4; ++nf) {
#pragma unroll
                                for (int e = 0; e < 2; ++e) {
                                    v[nf * 2 + e] = nf * 8 + 2 * c + e < limit
                                                        ? acc[i / 2][nf][(i % 2) * 2 + e]
                                                        : -INFINITY;
                                }
                            }
                            floor_of_half[i] =
                                quad_nth_largest<kCap < kHalfBlocks ? kCap : kHalfBlocks>(v, past);
                        }
                    }

                    // Filter: bit ((i * 4 + nf) * 2 + e) marks row i's score of column
                    // nf*8 + 2c + e as a candidate: a past block of the row, above its threshold
                    // (ties with the threshold lose: they come later in block order) and not below
                    // the half's floor (ties with the floor may still rank in).
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const int limit = own[i] - first;  // columns below limit are past blocks
#pragma unroll
                        for (int nf = 0; nf < 4; ++nf) {
#pragma unroll
                            for (int e = 0; e < 2; ++e) {
                                const float score = acc[i / 2][nf][(i % 2) * 2 + e];
                                const bool hit = nf * 8 + 2 * c + e < limit &&
                                                 score > threshold[i] && score >= floor_of_half[i];
                                pass |= static_cast<unsigned>(hit) << ((i * 4 + nf) * 2 + e);
                            }
                        }
                    }
                    if (!__any_sync(kFullMask, pass != 0)) continue;
                }

                if constexpr (kRegisterList) {
                    // Each thread writes its scores of the half to the warp's dump as its
                    // accumulator fragments lie (eight 16-byte stores, no register moves; -inf
                    // where the general filter dropped a score, raw scores in the steady state,
                    // the owner's threshold being the filter there), and the warp's ballots tell
                    // each owner lane which of its row's four writers have a score past the
                    // filter. At FlashMoBA's block 128 a row has ~0.7 candidates a half, so the
                    // owner reads a writer or two, not all four. No atomics, no compaction.
                    float* const dump =
                        reinterpret_cast<float*>(smem + L::kDump) + warp * L::kDumpWarpFloats;
                    float4* const thread_dump = reinterpret_cast<float4*>(dump) + lane;
                    bool wrote[4];
                    if (steady) {
#pragma unroll
                        for (int i = 0; i < 4; ++i) wrote[i] = (rows_hit >> i) & 1u;
#pragma unroll
                        for (int mf = 0; mf < 2; ++mf) {
#pragma unroll
                            for (int nf = 0; nf < 4; ++nf) {
                                thread_dump[(mf * 4 + nf) * kWarp] =
                                    make_float4(acc[mf][nf][0], acc[mf][nf][1], acc[mf][nf][2],
                                                acc[mf][nf][3]);
                            }
                        }
                    } else {
#pragma unroll
                        for (int i = 0; i < 4; ++i) wrote[i] = ((pass >> (i * 8)) & 0xffu) != 0;
#pragma unroll
                        for (int mf = 0; mf < 2; ++mf) {
#pragma unroll
                            for (int nf = 0; nf < 4; ++nf) {
                                float v[4];
#pragma unroll
                                for (int x = 0; x < 4; ++x) {  // x = hh * 2 + e
                                    const int i = mf * 2 + x / 2;
                                    const bool keep = (pass >> ((i * 4 + nf) * 2 + x % 2)) & 1u;
                                    v[x] = keep ? acc[mf][nf][x] : -INFINITY;
                                }
                                thread_dump[(mf * 4 + nf) * kWarp] =
                                    make_float4(v[0], v[1], v[2], v[3]);
                            }
                        }
                    }
                    // Row i * 8 + g of the warp is the thread's row i (i = 2 * mf + hh), so lane
                    // l owns row l, written by lanes 4 (l % 8) + c, c = 0..3, as their row l / 8:
                    // float (mf * 4 + nf) * F + (4 g + c) * 4 + hh * 2 + e of the warp's dump, F
                    // being kDumpFragmentFloats.
                    constexpr int F = L::kDumpFragmentFloats;
                    const unsigned wrote0 = __ballot_sync(kFullMask, wrote[0]);
                    const unsigned wrote1 = __ballot_sync(kFullMask, wrote[1]);
                    const unsigned wrote2 = __ballot_sync(kFullMask, wrote[2]);
                    const unsigned wrote3 = __ballot_sync(kFullMask, wrote[3]);
                    const int lane_i = lane / 8;
                    const unsigned wrote_by_i = lane_i == 0   ? wrote0
                                                : lane_i == 1 ? wrote1
                                                : lane_i == 2 ? wrote2
                                                              : wrote3;
                    unsigned writers = (wrote_by_i >> (4 * (lane % 8))) & 0xfu;
                    __syncwarp();
                    const float* const mine =
                        dump + (lane_i / 2) * 4 * F + (lane % 8) * 16 + (lane_i % 2) * 2;
                    const float lane_bar = reg_list.threshold();
                    unsigned over = 0;  // bit j: column j (block first + j) passes
                    while (writers != 0) {
                        const int writer = __ffs(writers) - 1;  // its columns nf*8 + 2*writer + e
                        writers &= writers - 1;
                        unsigned m = 0;  // selects of constant bits (shifted 0/1 took ~2.5 a bit)
#pragma unroll
                        for (int nf = 0; nf < 4; ++nf) {
                            const float2 y =
                                *reinterpret_cast<const float2*>(mine + nf * F + writer * 4);
                            m |= y.x > lane_bar ? 1u << (nf * 8) : 0u;
                            m |= y.y > lane_bar ? 2u << (nf * 8) : 0u;
                        }
                        over |= m << (2 * writer);
                    }
                    // Ascending columns: the list's insert relies on blocks arriving in order.
                    while (over != 0) {
                        const int column = __ffs(over) - 1;
                        over &= over - 1;
                        const int at =
                            (column >> 3) * F + ((column >> 1) & 3) * 4 + (column & 1);
                        reg_list.insert_ascending(mine[at], first + column);
                    }
                    __syncwarp();  // the dump is rewritten by the next half
                } else {
                    // Scatter: one shared atomic per (thread, row) with candidates reserves their
                    // slots; most (thread, row) pairs have none after the first half.
                    const int warp_row0 = warp * kRowsPerWarp;
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const unsigned bits = (pass >> (i * 8)) & 0xffu;
                        if (bits == 0) continue;
                        const int r = warp_row0 + (i / 2) * 16 + (i % 2) * 8 + g;
                        int at = atomicAdd(&cand_count[r], __popc(bits));
#pragma unroll
                        for (int nf = 0; nf < 4; ++nf) {
#pragma unroll
                            for (int e = 0; e < 2; ++e) {
                                if ((bits >> (nf * 2 + e)) & 1u) {
                                    cand_score[r * L::kCandStride + at] =
                                        acc[i / 2][nf][(i % 2) * 2 + e];
                                    cand_block[r * L::kCandStride + at] =
                                        first + nf * 8 + 2 * c + e;
                                    ++at;
                                }
                            }
                        }
                    }
                    __syncwarp();

                    // Lane l merges the candidates of row l into its list, which is unordered: a
                    // candidate that ranks before the worst entry replaces it, and a rescan (groups
                    // of eight independent loads, find_worst) finds the new worst. A sorted list's
                    // insertion shifted entries one dependent load/store pair at a time.
                    const int n = cand_count[lane_row];
                    for (int m = 0; m < n; ++m) {
                        const float score = cand_score[lane_row * L::kCandStride + m];
                        const int blk = cand_block[lane_row * L::kCandStride + m];
                        if (held == past && !ranks_before(score, blk, worst_score, worst_block)) {
                            continue;
                        }
                        const int at = held < past ? held++ : worst_at;
                        list_score[at] = score;
                        list_block[at] = blk;
                        if (held < past) continue;
                        find_worst<kCap>(list_score, list_block, past, worst_at, worst_score,
                                         worst_block);
                    }
                }
                float lane_threshold;
                bool lane_full;
                if constexpr (kRegisterList) {
                    lane_threshold = reg_list.threshold();
                    lane_full = reg_list.full();
                } else {
                    cand_count[lane_row] = 0;
                    lane_threshold = held == past ? worst_score : -INFINITY;
                    lane_full = held == past;
                }
                __syncwarp();
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    threshold[i] =
                        __shfl_sync(kFullMask, lane_threshold, (i / 2) * 16 + (i % 2) * 8 + g);
                }
                lists_full = __all_sync(kFullMask, lane_full);
            }
            __syncthreads();  // the stage is refilled by the next iteration's load
        }
    }

    // Lane l writes row l: its past blocks ascending, then the own block (the largest index).
    if (lane_own < 0) return;
    if constexpr (kRegisterList) held = reg_list.copy_blocks(list_block);
    std::int32_t* out = p.sel + rows.pair(lane_row, s.heads_q) * s.slots;
    if (lane_own <= past) {
        write_all_blocks(out, lane_own, s.slots);
        return;
    }
    for (int m = 1; m < held; ++m) {  // insertion sort of the held blocks by index
        const int blk = list_block[m];
        int at = m;
        while (at > 0 && list_block[at - 1] > blk) {
            list_block[at] = list_block[at - 1];
            --at;
        }
        list_block[at] = blk;
    }
    // held == past here (slots == topk) unless a score was NaN; pad whatever is missing.
    for (int t = 0; t < held; ++t) out[t] = list_block[t];
    out[held] = lane_own;
    for (int t = held + 1; t < s.slots; ++t) out[t] = -1;
}

// ---- fallback for k > 65: one warp per (query, head), passes of 32 ---------------------------
template <int kSteps>
__device__ __forceinline__ float warp_dot_sum(const float (&x)[kSteps], const float (&y)[kSteps]) {
    float partial = 0.0f;
#pragma unroll
    for (int r = 0; r < kSteps; ++r) partial = __fmaf_rn(x[r], y[r], partial);
    // Butterfly: every lane ends with the same bits, so branches on the score stay uniform.
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
        partial = __fadd_rn(partial, __shfl_xor_sync(kFullMask, partial, offset));
    return partial;
}

template <typename T, int D>
__device__ __forceinline__ float pass_score(const float (&qr)[D / kWarp], const T* hi, const T* lo,
                                            int j, int lane) {
    float kr[D / kWarp];
#pragma unroll
    for (int r = 0; r < D / kWarp; ++r) {
        const std::int64_t at = static_cast<std::int64_t>(j) * D + lane + kWarp * r;
        kr[r] = __fadd_rn(to_float(hi[at]), to_float(lo[at]));
    }
    return warp_dot_sum(qr, kr);
}

template <typename T, int D>
__global__ void __launch_bounds__(kPassesThreads) select_passes(GatingParams<T> p) {
    constexpr int kSteps = D / kWarp;
    const GatingShape& s = p.s;
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const std::int64_t items = s.total * s.heads_q;
    const std::int64_t warps_per_cta = kPassesThreads / kWarp;
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * warps_per_cta;
    for (std::int64_t w = blockIdx.x * warps_per_cta + threadIdx.x / kWarp; w < items;
         w += stride) {
        const std::int64_t i = w / s.heads_q;
        const int h = static_cast<int>(w % s.heads_q);
        const int b = find_sequence(p.cu, s.batch, i);
        const int own = own_block(p.cu, b, i, s.block);
        const int past = s.topk - 1;
        std::int32_t* out = p.sel + w * s.slots;
        if (past >= own) {
            if (lane == 0) write_all_blocks(out, own, s.slots);
            continue;
        }
        float qr[kSteps];
#pragma unroll
        for (int r = 0; r < kSteps; ++r) qr[r] = to_float(p.q[w * D + lane + kWarp * r]);
        const std::int64_t row0 =
            static_cast<std::int64_t>(h / s.group) * s.kbar_slots + kbar_base(p.cu, b, s.block);
        const T* hi = p.kbar_hi + row0 * D;
        const T* lo = p.kbar_lo + row0 * D;

        // Each pass keeps, among the blocks ranked after `bound`, the best 32 in a list sorted
        // across the lanes (entry r on lane r), then moves `bound` to its want-th entry.
        float bound_score = INFINITY;
        int bound_block = -1;
        for (int taken = 0; taken < past;) {
            const int want = min(kWarp, past - taken);  // own - taken >= want blocks remain
            float list_score = -INFINITY;
            int list_block = INT_MAX;
            for (int j = 0; j < own; ++j) {
                const float score = pass_score<T, D>(qr, hi, lo, j, lane);
                if (!ranks_before(bound_score, bound_block, score, j)) continue;  // taken
                const int pos = __popc(
                    __ballot_sync(kFullMask, ranks_before(list_score, list_block, score, j)));
                const float up_score = __shfl_up_sync(kFullMask, list_score, 1);
                const int up_block = __shfl_up_sync(kFullMask, list_block, 1);
                if (lane == pos) {
                    list_score = score;
                    list_block = j;
                } else if (lane > pos) {
                    list_score = up_score;
                    list_block = up_block;
                }
            }
            bound_score = __shfl_sync(kFullMask, list_score, want - 1);
            bound_block = __shfl_sync(kFullMask, list_block, want - 1);
            taken += want;
        }
        // The selected blocks rank at or before `bound`; visiting them in index order writes
        // them ascending, then the own block.
        int slot = 0;
        for (int j = 0; j < own; ++j) {
            const float score = pass_score<T, D>(qr, hi, lo, j, lane);
            if (!ranks_before(bound_score, bound_block, score, j)) {
                if (lane == 0) out[slot] = j;
                ++slot;
            }
        }
        if (lane == 0) out[slot] = own;
    }
}

// ---- host side -------------------------------------------------------------------------------
unsigned grid_size(std::int64_t items, int per_cta) {
    const std::int64_t ctas = (items + per_cta - 1) / per_cta;
    return static_cast<unsigned>(std::min<std::int64_t>(ctas, INT_MAX));
}

template <typename T, int D, int kWarps, int kCap>
void launch_select_topk(const GatingParams<T>& p, const GatingPlan& plan, cudaStream_t stream) {
    using L = SelectLayout<D, kWarps, kCap>;
    auto kernel = select_topk<T, D, kWarps, kCap>;
    MOBA_CUDA_CALL(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes));
    const dim3 grid(static_cast<unsigned>(plan.tiles),
                    static_cast<unsigned>(p.s.heads_kv * plan.head_chunks));
    kernel<<<grid, L::kThreads, L::kBytes, stream>>>(p);
    MOBA_CHECK_LAUNCH();
}

std::size_t kbar_term_bytes(const Problem& problem) {
    const std::int64_t slots = kbar_slots(problem.total_tokens(), problem.block, problem.batch());
    const std::size_t bytes = static_cast<std::size_t>(slots) * problem.heads_kv *
                              problem.head_dim * dtype_bytes(problem.dtype);
    return (bytes + 255) / 256 * 256;  // the lo term starts 256-byte aligned
}

}  // namespace

GatingPlan plan_gating(const Problem& problem) {
    problem.validate();
    GatingPlan plan;
    const int past = problem.topk - 1;
    if (past <= SortedList8::kEntries) {
        plan.select = GatingPlan::Select::top8;
        plan.rows = kTop8Warps * kRowsPerWarp;
    } else if (past <= 16) {
        plan.select = GatingPlan::Select::top16;
        plan.rows = kTop16Warps * kRowsPerWarp;
    } else if (past <= 64) {
        plan.select = GatingPlan::Select::top64;
        plan.rows = kTop64Warps * kRowsPerWarp;
    } else {
        plan.select = GatingPlan::Select::passes;
        return plan;  // one warp per row: no tiles
    }
    const int group = problem.group();
    plan.tile_heads = std::min(group, plan.rows);
    plan.tile_tokens = plan.rows / plan.tile_heads;
    plan.head_chunks = (group + plan.tile_heads - 1) / plan.tile_heads;
    plan.tiles = chunk_count(problem.total_tokens(), plan.tile_tokens, problem.batch());
    return plan;
}

Support gating_can_implement(const Problem& problem) {
    try {
        problem.validate();
    } catch (const std::exception& e) {
        return Support::no(e.what());
    }
    if (problem.dtype != DType::bf16 && problem.dtype != DType::f16) {
        return Support::no("tiled_mma gating takes bf16 or fp16 inputs, not " +
                           std::string(to_string(problem.dtype)));
    }
    if (problem.head_dim != 64 && problem.head_dim != 128) {
        return Support::no("tiled_mma gating supports head dims 64 and 128, not " +
                           std::to_string(problem.head_dim));
    }
    const std::int64_t means =
        kbar_slots(problem.total_tokens(), problem.block, problem.batch()) * problem.heads_kv;
    if (means > INT_MAX) {
        return Support::no("tiled_mma gating: " + std::to_string(means) +
                           " (block, kv head) pairs exceed the grid limit");
    }
    const GatingPlan plan = plan_gating(problem);
    if (plan.select != GatingPlan::Select::passes) {
        if (plan.tiles > INT_MAX) {
            return Support::no("tiled_mma gating: " + std::to_string(plan.tiles) +
                               " query tiles exceed the grid limit");
        }
        if (static_cast<std::int64_t>(problem.heads_kv) * plan.head_chunks > 65535) {
            return Support::no("tiled_mma gating: " + std::to_string(problem.heads_kv) +
                               " kv heads x " + std::to_string(plan.head_chunks) +
                               " head chunks exceed the grid's y limit 65535");
        }
    }
    return Support::yes();
}

std::size_t gating_workspace_bytes(const Problem& problem) {
    if (!gating_can_implement(problem).ok) return 0;
    return 2 * kbar_term_bytes(problem);
}

void gating(const GatingArgs& args) {
    const Problem& problem = args.problem;
    const Support support = gating_can_implement(problem);
    if (!support.ok) throw std::invalid_argument("tiled_mma gating: " + support.reason);
    if (args.workspace == nullptr) {
        throw std::invalid_argument("tiled_mma gating needs a workspace of " +
                                    std::to_string(gating_workspace_bytes(problem)) + " bytes");
    }
    if (reinterpret_cast<std::uintptr_t>(args.k) % 16 != 0 ||
        reinterpret_cast<std::uintptr_t>(args.q) % 4 != 0 ||
        reinterpret_cast<std::uintptr_t>(args.workspace) % 16 != 0) {
        throw std::invalid_argument(
            "tiled_mma gating needs k and the workspace 16-byte aligned and q 4-byte aligned");
    }
    const GatingPlan plan = plan_gating(problem);
    const GatingShape shape{problem.total_tokens(),
                            kbar_slots(problem.total_tokens(), problem.block, problem.batch()),
                            problem.batch(),
                            problem.heads_q,
                            problem.heads_kv,
                            problem.group(),
                            problem.block,
                            problem.topk,
                            problem.sel_slots()};
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int D = decltype(dim)::value;
        auto* hi = static_cast<T*>(args.workspace);
        auto* lo = reinterpret_cast<T*>(static_cast<unsigned char*>(args.workspace) +
                                        kbar_term_bytes(problem));
        const GatingParams<T> p{shape,
                                args.cu_seqlens,
                                static_cast<const T*>(args.q),
                                static_cast<const T*>(args.k),
                                hi,
                                lo,
                                args.sel,
                                plan.tile_tokens,
                                plan.tile_heads,
                                plan.head_chunks};
        block_means<T, D><<<static_cast<unsigned>(shape.kbar_slots * shape.heads_kv),
                            kMeansThreads, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
        switch (plan.select) {
            case GatingPlan::Select::top8:
                launch_select_topk<T, D, kTop8Warps, SortedList8::kEntries>(p, plan,
                                                                             args.stream);
                break;
            case GatingPlan::Select::top16:
                launch_select_topk<T, D, kTop16Warps, 16>(p, plan, args.stream);
                break;
            case GatingPlan::Select::top64:
                launch_select_topk<T, D, kTop64Warps, 64>(p, plan, args.stream);
                break;
            case GatingPlan::Select::passes:
                select_passes<T, D>
                    <<<grid_size(shape.total * shape.heads_q, kPassesThreads / kWarp),
                       kPassesThreads, 0, args.stream>>>(p);
                MOBA_CHECK_LAUNCH();
                break;
        }
    });
}

}  // namespace moba::sparse
