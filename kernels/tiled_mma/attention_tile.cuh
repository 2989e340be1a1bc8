// The core every tiled_mma attention kernel shares: one CTA, kRows query rows (16 per warp)
// against one contiguous range of keys, FlashAttention-2 style.
//   - Q rows are gathered from arbitrary addresses (consecutive tokens of one head for the
//     dense and own-block passes, the rows of an inverse block list for the sparse pass) into
//     shared memory once, then held in registers as MMA A fragments.
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

template <typename T, int kD, int kWarps>
struct Tile {
    static constexpr int kRows = 16 * kWarps;  // query rows per CTA
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

// What one thread accumulates for its two rows (warp row g and g + 8).
template <int kD>
struct RowAccum {
    float o[kD / 8][4];  // unnormalised output, C-fragment layout
    float m[2];          // running max, log2 domain (-inf: nothing seen)
    float l[2];          // running sum, this thread's 16 keys of each tile only until reduced
};

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

template <typename T, int kD, int kWarps>
__device__ __forceinline__ void load_kv_tile(T* dst, const T* src, std::int64_t stride,
                                             int key0, int num_keys) {
    using C = Tile<T, kD, kWarps>;
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
template <typename T, int kD, int kWarps>
__device__ __forceinline__ void load_q_rows(T* smem_q, const T* q, const std::int64_t* q_offset) {
    using C = Tile<T, kD, kWarps>;
    for (int idx = threadIdx.x; idx < C::kRows * C::kChunks; idx += C::kThreads) {
        const int r = idx / C::kChunks;
        const int c = idx % C::kChunks;
        const std::int64_t off = q_offset[r];
        copy16(smem_q + swizzled<kD>(r, c), q + (off >= 0 ? off : 0) + c * 8, off >= 0);
    }
}

// Runs the CTA's rows over keys [0, num_keys). lo/hi: the thread's two rows' key windows
// (inclusive; a row with lo > hi sees nothing and keeps m = -inf, l = 0).
// Expects the Q copy group committed and nothing else in flight; returns with l reduced over
// the quad (every lane of a quad holds its row's full sum) and all copies drained.
template <typename T, int kD, int kWarps>
__device__ void attend(T* smem, const KeyRange<T>& keys, const int (&lo)[2], const int (&hi)[2],
                       float scale_log2, RowAccum<kD>& acc) {
    using C = Tile<T, kD, kWarps>;
    using Op = MmaOp<T>;
    T* smem_q = smem;
    T* smem_k = smem + C::kQElems;
    T* smem_v = smem_k + 2 * C::kKVElems;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int t = lane % 4;

#pragma unroll
    for (int j = 0; j < C::kDTiles; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc.o[j][e] = 0.0f;
    acc.m[0] = acc.m[1] = -INFINITY;
    acc.l[0] = acc.l[1] = 0.0f;

    const int tiles = (keys.num_keys + C::kKeys - 1) / C::kKeys;
    if (tiles > 0) {
        load_kv_tile<T, kD, kWarps>(smem_k, keys.k, keys.kv_stride, 0, keys.num_keys);
        commit_copies();
        load_kv_tile<T, kD, kWarps>(smem_v, keys.v, keys.kv_stride, 0, keys.num_keys);
        commit_copies();
    }
    std::uint32_t qf[kD / 16][4];  // this warp's 16 Q rows as A fragments

    for (int n = 0; n < tiles; ++n) {
        const int stage = n & 1;
        const int key0 = n * C::kKeys;
        wait_copies<1>();  // Q and K[n] have landed (V[n] may be in flight)
        __syncthreads();
        if (n == 0) {
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk)
                ldmatrix_x4(qf[kk], smem_q + swizzled<kD>(16 * warp + (lane & 15), 2 * kk + (lane >> 4)));
        }
        if (n + 1 < tiles)
            load_kv_tile<T, kD, kWarps>(smem_k + (stage ^ 1) * C::kKVElems, keys.k, keys.kv_stride,
                                        key0 + C::kKeys, keys.num_keys);
        commit_copies();

        // S = Q K^T for this warp's 16 rows x kKeys keys.
        float s[C::kKeyTiles][4];
#pragma unroll
        for (int j = 0; j < C::kKeyTiles; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
        const T* k_tile = smem_k + stage * C::kKVElems;
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) {
#pragma unroll
            for (int p = 0; p < C::kKeyTiles / 2; ++p) {
                std::uint32_t b[4];
                ldmatrix_x4(b, k_tile + swizzled<kD>(16 * p + (lane & 7) + ((lane >> 4) << 3),
                                                     2 * kk + ((lane >> 3) & 1)));
                Op::run(s[2 * p], qf[kk], b[0], b[1]);
                Op::run(s[2 * p + 1], qf[kk], b[2], b[3]);
            }
        }

        // Scale, mask, online softmax. Keys past num_keys were zero-filled: always masked.
        const bool masked = key0 < keys.cta_max_lo || key0 + C::kKeys - 1 > keys.cta_min_hi ||
                            key0 + C::kKeys > keys.num_keys;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float row_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < C::kKeyTiles; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float x = s[j][2 * r + e] * scale_log2;
                    if (masked) {
                        const int key = key0 + 8 * j + 2 * t + e;
                        if (key < lo[r] || key > hi[r] || key >= keys.num_keys) x = -INFINITY;
                    }
                    s[j][2 * r + e] = x;
                    row_max = fmaxf(row_max, x);
                }
            }
            row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
            row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
            const float m_new = fmaxf(acc.m[r], row_max);
            // A row that has seen only masked keys keeps m = -inf; subtracting 0 then gives
            // 2^-inf = 0 for every p instead of NaN.
            const float base = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = exp2f(acc.m[r] - base);
            acc.m[r] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < C::kKeyTiles; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = exp2f(s[j][2 * r + e] - base);
                    s[j][2 * r + e] = p;
                    sum += p;
                }
            }
            acc.l[r] = acc.l[r] * alpha + sum;
#pragma unroll
            for (int j = 0; j < C::kDTiles; ++j) {
                acc.o[j][2 * r] *= alpha;
                acc.o[j][2 * r + 1] *= alpha;
            }
        }

        wait_copies<1>();  // V[n] has landed (K[n+1] may be in flight)
        __syncthreads();
        if (n + 1 < tiles)
            load_kv_tile<T, kD, kWarps>(smem_v + (stage ^ 1) * C::kKVElems, keys.v, keys.kv_stride,
                                        key0 + C::kKeys, keys.num_keys);
        commit_copies();

        // O += P V: P's C fragments of key tiles 2kk, 2kk+1 are the A fragment of step kk.
        const T* v_tile = smem_v + stage * C::kKVElems;
#pragma unroll
        for (int kk = 0; kk < C::kKeys / 16; ++kk) {
            const std::uint32_t a[4] = {Op::pack(s[2 * kk][0], s[2 * kk][1]),
                                        Op::pack(s[2 * kk][2], s[2 * kk][3]),
                                        Op::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                        Op::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int p = 0; p < C::kDTiles / 2; ++p) {
                std::uint32_t b[4];
                ldmatrix_x4_trans(b, v_tile + swizzled<kD>(16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3),
                                                           2 * p + (lane >> 4)));
                Op::run(acc.o[2 * p], a, b[0], b[1]);
                Op::run(acc.o[2 * p + 1], a, b[2], b[3]);
            }
        }
    }
    wait_copies<0>();
    __syncthreads();  // shared memory may be refilled by the caller's next item
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        acc.l[r] += __shfl_xor_sync(0xffffffffu, acc.l[r], 1);
        acc.l[r] += __shfl_xor_sync(0xffffffffu, acc.l[r], 2);
    }
}

}  // namespace moba::tiled_mma::detail
