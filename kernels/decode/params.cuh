// What every split_decode kernel reads: the batch's shape, where a request's key j lives
// (packed or paged), which request a new token belongs to, and where the work plan keeps its
// lists and partial results. Positions inside a request are int (k_len < 2^31, Problem's limit);
// anything indexing a whole tensor is int64.
#pragma once

#include <cstdint>

#include "kernels/kernel_api.hpp"

namespace moba::split_decode::detail {

struct Batch {
    const std::int32_t* cu_q;  // [B+1] new tokens
    const std::int32_t* cu_k;  // [B+1] cache lengths
    std::int64_t total_q;
    int batch;
    int heads_q;
    int heads_kv;
    int group;  // query heads per kv head
    int block;  // MoBA block size Bs
    int topk;
    int slots;  // width of a selection row
    float scale;
};

inline Batch make_batch(const DecodeArgs& args) {
    const Problem& c = args.cache;
    return {args.cu_q,   args.cu_k,   args.total_q, c.batch(),     c.heads_q,
            c.heads_kv,  c.group(),   c.block,      c.topk,        c.sel_slots(),
            static_cast<float>(c.scale())};
}

// Key j of request r: row cu_k[r] + j of the packed k, v, or its row in the paged pools.
struct KeyRows {
    const std::int32_t* cu_k;
    const std::int32_t* block_table;  // null: packed
    int page_size;
    int table_width;
    __device__ __forceinline__ std::int64_t operator()(int r, int j) const {
        if (block_table == nullptr) return static_cast<std::int64_t>(cu_k[r]) + j;
        const std::int64_t page =
            block_table[static_cast<std::int64_t>(r) * table_width + j / page_size];
        return page * page_size + j % page_size;
    }
};

inline KeyRows make_key_rows(const DecodeArgs& args) {
    return {args.cu_k, args.block_table, args.page_size, args.table_width};
}

// Largest c in [0, n) with key(c) <= x, for key nondecreasing and key(0) <= x.
template <typename Key>
__device__ __forceinline__ int last_at_most(int n, std::int64_t x, Key key) {
    int lo = 0;
    int hi = n - 1;  // the answer lies in [lo, hi]
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

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

struct Request {
    int index;
    int q_len;
    int k_len;
    int first_pos;        // position of new token 0: k_len - q_len
    std::int64_t q_start; // its row in q, out, sel
};

__device__ __forceinline__ Request request(const Batch& b, int r) {
    const int q_start = b.cu_q[r];
    const int q_len = b.cu_q[r + 1] - q_start;
    const int k_len = b.cu_k[r + 1] - b.cu_k[r];
    return {r, q_len, k_len, k_len - q_len, q_start};
}

// The request of new-token row `row` (every request has q_len >= 1, so cu_q is increasing).
__device__ __forceinline__ Request request_of_row(const Batch& b, std::int64_t row) {
    return request(b, last_at_most(b.batch, row, [&](int c) {
                       return static_cast<std::int64_t>(b.cu_q[c]);
                   }));
}

// Full block `blk` of request r in the kept means [total_k / Bs, Hkv, D]: slot cu_k[r]/Bs + blk.
// Requests never share a slot: floor((cu + k_len)/Bs) >= floor(cu/Bs) + floor(k_len/Bs).
__device__ __forceinline__ std::int64_t mean_slot(const Batch& b, int r, int blk) {
    return static_cast<std::int64_t>(b.cu_k[r] / b.block) + blk;
}

// First entry of the union list of (request r, kv head g), which has room for all n_blocks
// blocks of r: (cu_k[r]/Bs + r) * Hkv + g * n_blocks. Consecutive requests' bases differ by
// (floor(cu_k[r+1]/Bs) - floor(cu_k[r]/Bs) + 1) * Hkv >= ceil(k_len/Bs) * Hkv, so lists never
// overlap, and all fit in (total_k/Bs + B) * Hkv entries.
__device__ __forceinline__ std::int64_t union_base(const Batch& b, int r, int g, int n_blocks) {
    return (static_cast<std::int64_t>(b.cu_k[r] / b.block) + r) * b.heads_kv +
           static_cast<std::int64_t>(g) * n_blocks;
}

// The work of the attention and the merge. A (request, kv head) owns units: MoBA, the union
// of its heads' and tokens' selected blocks, each cut into chunks_per_block chunks of `span`
// keys; dense, the cache cut into units of `span` keys (one chunk each). A work item is one
// chunk; its partial softmax for each interested (token, head) goes to a fixed slot:
//   MoBA:  ((row * Hq + h) * slots + s) * chunks_per_block + c, s = the block's place in the row
//   dense: partial_base[r] + (t * Hq + h) * units_r + unit
// so the merge visits them in a fixed order and nothing depends on which CTA ran what.
struct Plan {
    bool dense;
    int span;
    int chunks_per_block;
    const std::int32_t* sel;          // MoBA: [total_q, Hq, slots]
    const std::int32_t* union_list;   // MoBA
    const std::int32_t* union_count;  // MoBA: [B * Hkv]
    std::int64_t* item_prefix;        // [B * Hkv + 1]
    std::int64_t* partial_base;       // dense: [B + 1]
    float2* partial_ml;               // (m, l): max score and sum of exp(score - m)
    float* partial_o;                 // [.., D]: sum of exp(score - m) v
};

__device__ __forceinline__ std::int64_t moba_partial(const Batch& b, const Plan& p,
                                                     std::int64_t row, int h, int slot, int chunk) {
    return ((row * b.heads_q + h) * b.slots + slot) * p.chunks_per_block + chunk;
}

__device__ __forceinline__ std::int64_t dense_partial(const Batch& b, const Plan& p,
                                                      const Request& req, int t, int h, int unit) {
    const int units = ceil_div(req.k_len, p.span);
    return p.partial_base[req.index] +
           (static_cast<std::int64_t>(t) * b.heads_q + h) * units + unit;
}

}  // namespace moba::split_decode::detail
