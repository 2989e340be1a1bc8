// The core every tiled_mma attention kernel shares: one CTA, kRows query rows (16 * kM per
// warp) against one contiguous range of keys, FlashAttention-2 style.
//   - Q rows are gathered from arbitrary addresses (consecutive tokens of one head for the
//     dense and own-block passes, the rows of an inverse block list for the sparse pass) into
//     shared memory once and read as MMA A fragments at every k step (registers go to the
//     kM m-tiles of accumulators instead: each K/V fragment read from shared memory then
//     feeds kM MMAs, which is what bounds the kernel's shared-memory traffic per FLOP).
//   - K and V tiles of kKeys keys stream through a two-stage cp.async ring; S = Q K^T and
//     O += P V run on mma.m16n8k16 with fp32 accumulation; P is rounded to the input dtype in
//     registers and reused as the A operand (never written to memory).
//   - Online softmax in the log2 domain: m is the running max of scale*log2(e)*s, l the running
//     sum of 2^(that - m); rows mask keys outside their own [lo, hi] window.
// The caller owns what happens before (row addresses, windows) and after (writing O, m, l).
#pragma once

#include <cstdint>

#include "kernels/tiled_mma/mma.cuh"

namespace moba::tiled_mma::detail {

template <typename T, int kD, int kWarps, int kM>
struct Tile {
    static constexpr int kRowsPerWarp = 16 * kM;
    static constexpr int kRows = kRowsPerWarp * kWarps;  // query rows per CTA
    static constexpr int kKeys = 64;           // keys per K/V tile
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kChunks = kD / 8;     // 16-byte chunks per row
    static constexpr int kDTiles = kD / 8;     // n-tiles of the O accumulator
    static constexpr int kKeyTiles = kKeys / 8;
    // Shared memory: Q, then K and V rings of two stages, then the row offsets.
    static constexpr int kQElems = kRows * kD;
    static constexpr int kKVElems = kKeys * kD;
    static constexpr std::size_t kSmemBytes =
        sizeof(T) * (kQElems + 4 * kKVElems) + sizeof(std::int64_t) * kRows;
};

// What one thread accumulates for its 2 kM rows: m-tile i, rows g and g + 8 of it, i.e. warp
// row 16 i + g + 8 r is entry 2 i + r of m and l.
template <int kD, int kM>
struct RowAccum {
    float o[kM][kD / 8][4];  // unnormalised output, C-fragment layout
    float m[2 * kM];         // running max, log2 domain (-inf: nothing seen)
    float l[2 * kM];         // running sum (this thread's keys only until attend() reduces it)
};

// Row of the CTA tile held as entry e of a thread's RowAccum.
template <int kM>
__device__ __forceinline__ int accum_row(int e) {
    const int warp = threadIdx.x / 32;
    const int g = (threadIdx.x % 32) / 4;
    return 16 * kM * warp + 16 * (e / 2) + g + 8 * (e % 2);
}

// Inputs of attend(). Keys are numbered from key_base: key j sits at
// k + j * kv_stride (same for v), 0 <= j < num_keys.
template <typename T>
struct KeyRange {
    const T* k;
    const T* v;
    std::int64_t kv_stride;  // elements between consecutive keys (Hkv * D)
    int num_keys;
    // Every row's window lies inside [cta_lo, ...]; tiles fully inside every row's window
    // [cta_max_lo, cta_min_hi] skip the masking work.
    int cta_max_lo;
    int cta_min_hi;
};

template <typename T, int kD, int kWarps, int kM>
__device__ __forceinline__ void load_kv_tile(T* dst, const T* src, std::int64_t stride,
                                             int key0, int num_keys) {
    using C = Tile<T, kD, kWarps, kM>;
    for (int idx = threadIdx.x; idx < C::kKeys * C::kChunks; idx += C::kThreads) {
        const int r = idx / C::kChunks;
        const int c = idx % C::kChunks;
        const bool valid = key0 + r < num_keys;
        const T* from = src + (valid ? (key0 + r) * stride : 0) + c * 8;
        copy16(dst + swizzled<kD>(r, c), from, valid);
    }
}

// Gathers the Q rows of q_offset (element offset into q per row, -1: a padding row of zeros)
// into shared memory and commits the copy group. The caller then calls attend().
template <typename T, int kD, int kWarps, int kM>
__device__ __forceinline__ void load_q_rows(T* smem_q, const T* q, const std::int64_t* q_offset) {
    using C = Tile<T, kD, kWarps, kM>;
    for (int idx = threadIdx.x; idx < C::kRows * C::kChunks; idx += C::kThreads) {
        const int r = idx / C::kChunks;
        const int c = idx % C::kChunks;
        const std::int64_t off = q_offset[r];
        copy16(smem_q + swizzled<kD>(r, c), q + (off >= 0 ? off : 0) + c * 8, off >= 0);
    }
}

// Runs the CTA's rows over keys [0, num_keys). lo/hi: the thread's rows' key windows in
// RowAccum order (inclusive; a row with lo > hi sees nothing and keeps m = -inf, l = 0).
// Expects the Q copy group committed and nothing else in flight; returns with l reduced over
// the quad (every lane of a quad holds its row's full sum) and all copies drained.
template <typename T, int kD, int kWarps, int kM>
__device__ void attend(T* smem, const KeyRange<T>& keys, const int (&lo)[2 * kM],
                       const int (&hi)[2 * kM], float scale_log2, RowAccum<kD, kM>& acc) {
    using C = Tile<T, kD, kWarps, kM>;
    using Op = MmaOp<T>;
    T* smem_q = smem;
    T* smem_k = smem + C::kQElems;
    T* smem_v = smem_k + 2 * C::kKVElems;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int t = lane % 4;

#pragma unroll
    for (int i = 0; i < kM; ++i)
#pragma unroll
        for (int j = 0; j < C::kDTiles; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc.o[i][j][e] = 0.0f;
#pragma unroll
    for (int e = 0; e < 2 * kM; ++e) {
        acc.m[e] = -INFINITY;
        acc.l[e] = 0.0f;
    }

    const int tiles = (keys.num_keys + C::kKeys - 1) / C::kKeys;
    if (tiles > 0) {
        load_kv_tile<T, kD, kWarps, kM>(smem_k, keys.k, keys.kv_stride, 0, keys.num_keys);
        commit_copies();
        load_kv_tile<T, kD, kWarps, kM>(smem_v, keys.v, keys.kv_stride, 0, keys.num_keys);
        commit_copies();
    }
    const T* q_warp = smem_q + C::kRowsPerWarp * warp * kD;  // this warp's rows

    for (int n = 0; n < tiles; ++n) {
        const int stage = n & 1;
        const int key0 = n * C::kKeys;
        wait_copies<1>();  // Q and K[n] have landed (V[n] may be in flight)
        __syncthreads();
        if (n + 1 < tiles)
            load_kv_tile<T, kD, kWarps, kM>(smem_k + (stage ^ 1) * C::kKVElems, keys.k,
                                            keys.kv_stride, key0 + C::kKeys, keys.num_keys);
        commit_copies();

        // S = Q K^T for this warp's 16 kM rows x kKeys keys.
        float s[kM][C::kKeyTiles][4];
#pragma unroll
        for (int i = 0; i < kM; ++i)
#pragma unroll
            for (int j = 0; j < C::kKeyTiles; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[i][j][e] = 0.0f;
        const T* k_tile = smem_k + stage * C::kKVElems;
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) {
            std::uint32_t qf[kM][4];
#pragma unroll
            for (int i = 0; i < kM; ++i)  // rows 16 i + (lane & 15), chunk 2 kk + (lane >> 4)
                ldmatrix_x4(qf[i], q_warp + swizzled<kD>(16 * i + (lane & 15), 2 * kk + (lane >> 4)));
#pragma unroll
            for (int p = 0; p < C::kKeyTiles / 2; ++p) {
                std::uint32_t b[4];
                ldmatrix_x4(b, k_tile + swizzled<kD>(16 * p + (lane & 7) + ((lane >> 4) << 3),
                                                     2 * kk + ((lane >> 3) & 1)));
#pragma unroll
                for (int i = 0; i < kM; ++i) {
                    Op::run(s[i][2 * p], qf[i], b[0], b[1]);
                    Op::run(s[i][2 * p + 1], qf[i], b[2], b[3]);
                }
            }
        }

        // Mask, online softmax. Keys past num_keys were zero-filled: always masked.
        const bool masked = key0 < keys.cta_max_lo || key0 + C::kKeys - 1 > keys.cta_min_hi ||
                            key0 + C::kKeys > keys.num_keys;
#pragma unroll
        for (int e = 0; e < 2 * kM; ++e) {
            const int i = e / 2;
            const int r = e % 2;
            float row_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < C::kKeyTiles; ++j) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    if (masked) {
                        const int key = key0 + 8 * j + 2 * t + c;
                        if (key < lo[e] || key > hi[e] || key >= keys.num_keys)
                            s[i][j][2 * r + c] = -INFINITY;
                    }
                    row_max = fmaxf(row_max, s[i][j][2 * r + c]);
                }
            }
            row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
            row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
            const float m_new = fmaxf(acc.m[e], row_max * scale_log2);
            // A row that has seen only masked keys keeps m = -inf; subtracting 0 then gives
            // 2^-inf = 0 for every p instead of NaN.
            const float base = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = exp2_approx(acc.m[e] - base);
            acc.m[e] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < C::kKeyTiles; ++j) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    // One FFMA and one MUFU per score: 2^(scale log2e s - m).
                    const float p = exp2_approx(fmaf(s[i][j][2 * r + c], scale_log2, -base));
                    s[i][j][2 * r + c] = p;
                    sum += p;
                }
            }
            acc.l[e] = acc.l[e] * alpha + sum;
#pragma unroll
            for (int j = 0; j < C::kDTiles; ++j) {
                acc.o[i][j][2 * r] *= alpha;
                acc.o[i][j][2 * r + 1] *= alpha;
            }
        }

        wait_copies<1>();  // V[n] has landed (K[n+1] may be in flight)
        __syncthreads();
        if (n + 1 < tiles)
            load_kv_tile<T, kD, kWarps, kM>(smem_v + (stage ^ 1) * C::kKVElems, keys.v,
                                            keys.kv_stride, key0 + C::kKeys, keys.num_keys);
        commit_copies();

        // O += P V: P's C fragments of key tiles 2kk, 2kk+1 are the A fragment of step kk.
        const T* v_tile = smem_v + stage * C::kKVElems;
#pragma unroll
        for (int kk = 0; kk < C::kKeys / 16; ++kk) {
            std::uint32_t a[kM][4];
#pragma unroll
            for (int i = 0; i < kM; ++i) {
                a[i][0] = Op::pack(s[i][2 * kk][0], s[i][2 * kk][1]);
                a[i][1] = Op::pack(s[i][2 * kk][2], s[i][2 * kk][3]);
                a[i][2] = Op::pack(s[i][2 * kk + 1][0], s[i][2 * kk + 1][1]);
                a[i][3] = Op::pack(s[i][2 * kk + 1][2], s[i][2 * kk + 1][3]);
            }
#pragma unroll
            for (int p = 0; p < C::kDTiles / 2; ++p) {
                std::uint32_t b[4];
                ldmatrix_x4_trans(b, v_tile + swizzled<kD>(16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3),
                                                           2 * p + (lane >> 4)));
#pragma unroll
                for (int i = 0; i < kM; ++i) {
                    Op::run(acc.o[i][2 * p], a[i], b[0], b[1]);
                    Op::run(acc.o[i][2 * p + 1], a[i], b[2], b[3]);
                }
            }
        }
    }
    wait_copies<0>();
    __syncthreads();  // shared memory may be refilled by the caller's next item
#pragma unroll
    for (int e = 0; e < 2 * kM; ++e) {
        acc.l[e] += __shfl_xor_sync(0xffffffffu, acc.l[e], 1);
        acc.l[e] += __shfl_xor_sync(0xffffffffu, acc.l[e], 2);
    }
}

}  // namespace moba::tiled_mma::detail
