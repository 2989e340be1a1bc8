// The shared-memory tile layout of the wgmma kernels and the steps of one attention tile (loads, the
// two GEMMs, the online softmax), as device functions the kernels (causal_kernel.cuh, wave_kernel.cuh,
// dq_kernel.cuh, dkdv_kernel.cuh)
// and the layout probes (probe.cu, test_wgmma_layout_gpu) share.
//
// Layout. A tile of `rows` rows x kD columns (Q, K or V, as TMA writes them with 128-byte
// swizzle) is kD / 64 column blocks of 64 elements (128 bytes) one after another; column block
// c holds every row's columns [64 c, 64 c + 64) as consecutive 128-byte lines, and 16-byte
// chunk j of line r sits at chunk j ^ (r % 8). Every column block starts 1024-byte aligned.
// That is wgmma's canonical 128-byte-swizzle layout in both readings:
//   - K-major (Q as A, K as B of S = Q K^T; the contraction dim D is contiguous): groups of 8
//     rows 1024 bytes apart (stride byte offset); a k16 step is 32 bytes further along the
//     line inside a column block, the next column block is rows * 128 bytes further.
//   - MN-major (V as B of O = P V; the contraction dim is the key = row, N = D contiguous):
//     8 keys per 1024-byte group (stride byte offset), column blocks of 64 D-elements
//     rows * 128 bytes apart (leading byte offset); a k16 step is 16 keys = 2048 bytes.
#pragma once

#include <cstdint>

#include "kernels/wgmma/ptx.cuh"

namespace moba::wgmma::detail {

template <int kD>
struct TileShape {
    static_assert(kD == 64 || kD == 128, "head dims 64 and 128");
    static constexpr int kBlockM = 128;  // query rows per CTA: 64 per consumer warpgroup
    static constexpr int kBlockN = 128;  // keys per K/V tile
    static constexpr int kColBlocks = kD / 64;
    static constexpr std::uint32_t kLineBytes = 128;  // one row of one column block
    static constexpr std::uint32_t kQBytes = kBlockM * kD * 2;
    static constexpr std::uint32_t kKVBytes = kBlockN * kD * 2;
};

// The CTA's dynamic shared window aligned up to 1024 bytes: the 128-byte swizzle atoms that TMA
// writes and wgmma descriptors read need it (every kernel's plan reserves 1024 bytes of slack).
// The pointer steps from the __shared__ array itself by the shared address's distance to the next
// 1024-byte boundary: a pointer rebuilt from integer arithmetic on the generic address loses its
// state space, and every ordinary load through it compiled to a generic LD.E instead of LDS (PTX
// of 4535bd5: 25 generic loads in moba_dkdv_kernel, 18 in dq_wave_kernel, 15 in the sparse waves).
__device__ __forceinline__ unsigned char* aligned_smem(unsigned char* raw) {
    return raw + ((1024u - (smem_u32(raw) & 1023u)) & 1023u);
}

// Accumulator entry e = 4 i + 2 r + c of a thread in a warpgroup's m64nN fragment is
// row acc_row(r) and column acc_col(i, c) of the warpgroup's 64-row tile.
__device__ __forceinline__ int acc_row(int r) {
    const int warp = (threadIdx.x / 32) % 4;
    return 16 * warp + (threadIdx.x % 32) / 4 + 8 * r;
}
__device__ __forceinline__ int acc_col(int i, int c) { return 8 * i + 2 * (threadIdx.x % 4) + c; }

// Calls fn(i, r, c) for every entry 4 i + 2 r + c of a thread's m64n128 fragment (64 floats):
// row acc_row(r), column acc_col(i, c). Fully unrolled.
template <typename Fn>
__device__ __forceinline__ void for_each_acc(Fn&& fn) {
#pragma unroll
    for (int i = 0; i < 16; ++i)
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int c = 0; c < 2; ++c) fn(i, r, c);
}

// Loads rows [row0, row0 + rows) of head `head` of a [tokens, heads, kD] tensor map (box:
// 64 columns x 1 head x `rows` rows) into a tile at `dst`; completes on `bar`. One thread.
template <int kD, int kRows>
__device__ __forceinline__ void load_tile(unsigned char* dst, const CUtensorMap* map, std::uint64_t* bar,
                                          int head, int row0) {
#pragma unroll
    for (int c = 0; c < kD / 64; ++c) tma_load_3d(dst + c * kRows * 128, map, bar, 64 * c, head, row0);
}

// S(64 x 128) = Q(64 rows of the Q tile from q_row0) K^T(128 keys of the K tile), both
// operands from shared memory. Issues and commits one wgmma group: S is ready after a wait
// that covers the group (and fence_operands(s)).
template <typename T, int kD>
__device__ __forceinline__ void qk_gemm_issue(float (&s)[64], const unsigned char* q_tile, int q_row0,
                                              const unsigned char* k_tile) {
    using S = TileShape<kD>;
    const Sw128Descriptor q = sw128_descriptor_steps(smem_u32(q_tile) + q_row0 * S::kLineBytes, 16, 1024);
    const Sw128Descriptor k = sw128_descriptor_steps(smem_u32(k_tile), 16, 1024);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
        // kk / 4: column block; kk % 4: 32-byte step inside the swizzled 128-byte line.
        const std::uint32_t step = (kk / 4) * S::kBlockN * S::kLineBytes + (kk % 4) * 32;
        const std::uint32_t q_step = (kk / 4) * S::kBlockM * S::kLineBytes + (kk % 4) * 32;
        Wgmma<T, 128>::ss(s, q.at(q_step), k.at(step), kk > 0 ? 1 : 0);
    }
    wgmma_commit();
}
// The same, waited for: S is ready on return.
template <typename T, int kD>
__device__ __forceinline__ void qk_gemm(float (&s)[64], const unsigned char* q_tile, int q_row0,
                                        const unsigned char* k_tile) {
    qk_gemm_issue<T, kD>(s, q_tile, q_row0, k_tile);
    wgmma_wait<0>();
    fence_operands(s);
}

// Byte offset, in a kRows-row tile of the layout above, of row r's 16-byte chunk c (columns
// [8 c, 8 c + 8)): column block c / 8, line r, chunk c % 8 of the line swizzled by r % 8.
template <int kRows>
__device__ __forceinline__ int swizzled_chunk(int r, int c) {
    return (c / 8) * kRows * 128 + r * 128 + (((c % 8) ^ (r % 8)) * 16);
}

// Gathers a kRows-row tile from arbitrary rows of a [.., kD] tensor `src` (2-byte elements)
// into the layout above with cp.async (TMA boxes cannot gather): row_offset(r) is the element
// offset of tile row r's kD values, or negative for a row of zeros. The calling threads,
// numbered tid = 0 .. threads - 1, share the copies; each then waits for its own copies and
// fences them for wgmma (async proxy), so after a barrier that orders the callers before the
// wgmma threads (an mbarrier arrival each, or bar.sync), the tile may be read by wgmma.
template <int kD, int kRows, typename RowOffset>
__device__ __forceinline__ void gather_tile(unsigned char* tile, const void* src, int tid, int threads,
                                            RowOffset row_offset) {
    constexpr int kChunks = kD / 8;  // 16-byte chunks per row
    const auto* base = static_cast<const unsigned char*>(src);
    for (int idx = tid; idx < kRows * kChunks; idx += threads) {
        const int r = idx / kChunks;
        const int c = idx % kChunks;  // column block c / 8, chunk c % 8 of its 128-byte line
        const std::int64_t offset = row_offset(r);
        unsigned char* dst = tile + swizzled_chunk<kRows>(r, c);
        cp_async16(dst, base + (offset >= 0 ? offset * 2 + c * 16 : 0), offset >= 0);
    }
    cp_async_wait_all();
    fence_proxy_async_shared();
}

// One online-softmax step over a 128-key score tile S (already masked with -inf) for the
// thread's two rows: m (running max of scale_log2 * s) and l (this thread's part of the
// running sum) are updated, S is replaced by P = 2^(scale_log2 s - m), and alpha[r] is the
// factor O's row r must be rescaled by (rescale_rows) before P V is added. Leaves O alone, so
// a P V product of the previous tile may still be accumulating into it.
// A row's 128 scores are spread over the 4 lanes of a quad (32 each).
__device__ __forceinline__ void softmax_step(float (&sc)[64], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                             float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float row_max = -INFINITY;
#pragma unroll
        for (int i = 0; i < 16; ++i)
            row_max = fmaxf(row_max, fmaxf(sc[4 * i + 2 * r], sc[4 * i + 2 * r + 1]));
        row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
        row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
        const float m_new = fmaxf(m[r], row_max * scale_log2);
        // A row that has seen only masked keys keeps m = -inf; subtracting 0 then gives
        // 2^-inf = 0 instead of NaN. (A dense causal row always sees key 0; an own-block row
        // of a tile spanning several MoBA blocks can see nothing in its first key tiles.)
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        alpha[r] = exp2_approx(m[r] - base);
        m[r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; ++i)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const float e = exp2_approx(fmaf(sc[4 * i + 2 * r + c], scale_log2, -base));
                sc[4 * i + 2 * r + c] = e;
                sum += e;
            }
        l[r] = l[r] * alpha[r] + sum;
    }
}
// O's rows times softmax_step's alpha.
template <int kD>
__device__ __forceinline__ void rescale_rows(float (&o)[kD / 2], const float (&alpha)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int i = 0; i < kD / 8; ++i) {
            o[4 * i + 2 * r] *= alpha[r];
            o[4 * i + 2 * r + 1] *= alpha[r];
        }
}
// softmax_step, then O rescaled: O must not be a pending wgmma's accumulator.
template <int kD>
__device__ __forceinline__ void online_softmax(float (&sc)[64], float (&m)[2], float (&l)[2],
                                               float (&o)[kD / 2], float scale_log2) {
    float alpha[2];
    softmax_step(sc, m, l, alpha, scale_log2);
    rescale_rows<kD>(o, alpha);
}

// P (64 x 16 kSteps, fp32 accumulator layout) rounded to the dtype as the register A operand
// of O += P V (kSteps 8: 128 keys) or of the backward's dV += P^T dO (kSteps 4: 64 rows): k16
// step j covers columns [16 j, 16 j + 16), i.e. accumulator column groups 2 j and 2 j + 1,
// whose registers are exactly the mma.m16n8k16 A fragment
//   a0 (g, 2t..)  a1 (g + 8, 2t..)  a2 (g, 2t + 8..)  a3 (g + 8, 2t + 8..).
template <typename T, int kSteps>
__device__ __forceinline__ void p_fragments(std::uint32_t (&a)[kSteps][4], const float (&p)[8 * kSteps]) {
#pragma unroll
    for (int j = 0; j < kSteps; ++j) {
        a[j][0] = pack2<T>(p[8 * j + 0], p[8 * j + 1]);
        a[j][1] = pack2<T>(p[8 * j + 2], p[8 * j + 3]);
        a[j][2] = pack2<T>(p[8 * j + 4], p[8 * j + 5]);
        a[j][3] = pack2<T>(p[8 * j + 6], p[8 * j + 7]);
    }
}

// O(64 x kD) += P(64 x 128 keys) V(128 keys x kD): A from registers, V from shared memory
// read MN-major. Issues and commits one wgmma group: until a wait covers it, O, the A
// fragments and V must be left alone.
template <typename T, int kD>
__device__ __forceinline__ void pv_gemm_issue(float (&o)[kD / 2], const std::uint32_t (&a)[8][4],
                                              const unsigned char* v_tile) {
    using S = TileShape<kD>;
    const Sw128Descriptor v = sw128_descriptor_steps(smem_u32(v_tile), S::kBlockN * S::kLineBytes, 1024);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < S::kBlockN / 16; ++j) Wgmma<T, kD>::rs(o, a[j], v.at(j * 16 * S::kLineBytes));
    wgmma_commit();
}
// The same, waited for: O is ready and V may be overwritten on return.
template <typename T, int kD>
__device__ __forceinline__ void pv_gemm(float (&o)[kD / 2], const std::uint32_t (&a)[8][4],
                                        const unsigned char* v_tile) {
    pv_gemm_issue<T, kD>(o, a, v_tile);
    wgmma_wait<0>();
    fence_operands(o);
}

}  // namespace moba::wgmma::detail
