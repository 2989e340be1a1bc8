// Index helpers of the MoBA kernels (gating, inverse block lists, both backends' waves): which
// sequence of the packed batch a token belongs to, and where per-block (or per-tile) data of
// sequence b lives in a buffer indexed without per-sequence offsets. Self-contained: include
// it from any .cu file. Everything is __host__ __device__ and only reads cu_seqlens, so host
// code may call it on a host copy of cu.
//
// Chunk numbering. Cut every sequence b of length L_b into chunks of C tokens (MoBA blocks with
// C = Bs, query tiles with C = the tile height). Chunk c of sequence b gets the global index
//     chunk_base(b) + c,   chunk_base(b) = cu[b] / C + b,
// and indices below chunk_count = total / C + B. Ranges of different sequences never overlap:
//     chunk_base(b+1) - chunk_base(b) = floor(cu[b+1]/C) - floor(cu[b]/C) + 1
//                                     >= floor(L_b/C) + 1 >= ceil(L_b/C),
// so a buffer of chunk_count rows holds every chunk, with a few unused gap rows between
// sequences, and chunk_sequence inverts the numbering by a binary search over cu.
//
// Block means ("kbar") use C = Bs: block j of sequence b sits at slot kbar_base(b) + j of
// kbar_slots = total/Bs + B slots, the same layout as the naive kernels. The inverse block
// lists of block_lists.hpp are indexed by list = (wave * kbar_slots + slot) * Hkv + kv head.
#pragma once

#include <cstdint>

namespace moba::sparse {

// Number of global chunk indices: total / C + B (gap indices included).
__host__ __device__ __forceinline__ std::int64_t chunk_count(std::int64_t total, int chunk,
                                                             int batch) {
    return total / chunk + batch;
}

// Global index of chunk 0 of sequence b; cu is cu_seqlens [B+1].
__host__ __device__ __forceinline__ std::int64_t chunk_base(const std::int32_t* cu, int b,
                                                            int chunk) {
    return static_cast<std::int64_t>(cu[b] / chunk) + b;
}

// Largest b in [0, batch) with key(b) <= x, for key nondecreasing in b and key(0) <= x.
template <typename Key>
__host__ __device__ __forceinline__ int last_at_most(int batch, std::int64_t x, Key key) {
    int lo = 0;
    int hi = batch - 1;  // invariant: the answer lies in [lo, hi]
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (key(mid) <= x) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

// Sequence b holding packed token t: cu[b] <= t < cu[b+1] (0 <= t < total).
__host__ __device__ __forceinline__ int find_sequence(const std::int32_t* cu, int batch,
                                                      std::int64_t t) {
    return last_at_most(batch, t, [cu](int b) { return static_cast<std::int64_t>(cu[b]); });
}

// Sequence whose chunk range [chunk_base(b), chunk_base(b+1)) holds global chunk index `index`
// (0 <= index < chunk_count). The chunk may still be a gap row past the sequence's end: check
// (index - chunk_base(b)) * C < L_b.
__host__ __device__ __forceinline__ int chunk_sequence(const std::int32_t* cu, int batch,
                                                       std::int64_t index, int chunk) {
    return last_at_most(batch, index, [cu, chunk](int b) { return chunk_base(cu, b, chunk); });
}

// ---- block means: kbar slots (C = Bs) -------------------------------------------------------
__host__ __device__ __forceinline__ std::int64_t kbar_slots(std::int64_t total, int block,
                                                            int batch) {
    return chunk_count(total, block, batch);
}

__host__ __device__ __forceinline__ std::int64_t kbar_base(const std::int32_t* cu, int b,
                                                           int block) {
    return chunk_base(cu, b, block);
}

// Own MoBA block of packed token t of sequence b: blocks 0 .. own-1 are its past blocks.
__host__ __device__ __forceinline__ int own_block(const std::int32_t* cu, int b, std::int64_t t,
                                                  int block) {
    return static_cast<int>((t - cu[b]) / block);
}

}  // namespace moba::sparse
