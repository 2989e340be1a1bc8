// Naive MoBA decode (SEMANTICS.md §9): the new tokens of a batch of requests against their KV
// caches, packed or paged. New token t of request r sits at position i = k_len - q_len + t of
// its cache and gates and attends exactly as position i does in prefill (gating.cu, forward.cu).
// The plain version: nothing is prepared or kept between steps. Every block mean a query scores
// is recomputed from k when it is scored, the same way block_means in gating.cu computes it
// (fp32 sum of the block's keys in key order, then divided by the block's token count), so the
// scores, and hence the selection, are bitwise those of the naive prefill gating at position i.
// Two stream-ordered kernels, one warp per (new token, query head), lanes splitting D:
// decode_select writes the selection row (only when args.gate), decode_attend attends the row.
// Cost of gating: every scoring of a past block reads its Bs keys (Bs * D loads), and a query
// scores its past blocks ceil((k-1)/32) + 1 times (gating.cu's passes): slow for long caches,
// but obviously right and deterministic.
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/cuda_check.hpp"
#include "kernels/naive/common.cuh"
#include "kernels/naive/naive.hpp"

namespace moba::naive {
namespace {

using namespace detail;

template <typename T>
struct DecodeParams {
    Shape shape;                      // of the cache problem (shape.total: cached tokens)
    std::int64_t total_q;             // new tokens
    const std::int32_t* cu_q;         // [B+1]
    const std::int32_t* cu_k;         // [B+1]
    const T* q;                       // [total_q, Hq, D]
    const T* k;                       // packed [total_k, Hkv, D] or pool [pages*page_size, Hkv, D]
    const T* v;                       // likewise
    const std::int32_t* block_table;  // [B, table_width] or null (packed)
    int page_size;
    int table_width;
    std::int32_t* sel;                // [total_q, Hq, slots]
    T* out;                           // [total_q, Hq, D]
    float* lse;                       // [Hq, total_q]
};

// The row of k / v holding token j of request r (DecodeArgs).
template <typename T>
__device__ __forceinline__ std::int64_t cache_row(const DecodeParams<T>& p, int r, std::int64_t j) {
    if (p.block_table == nullptr) return static_cast<std::int64_t>(p.cu_k[r]) + j;
    const std::int64_t page =
        p.block_table[static_cast<std::int64_t>(r) * p.table_width + j / p.page_size];
    return page * p.page_size + j % p.page_size;
}

// The request of new token `row` and its position i in that request's cache.
struct TokenPosition {
    int request;
    std::int64_t position;
};

template <typename T>
__device__ __forceinline__ TokenPosition locate(const DecodeParams<T>& p, std::int64_t row) {
    const int r = find_sequence(p.cu_q, p.shape.batch, row);
    const std::int64_t k_len = static_cast<std::int64_t>(p.cu_k[r + 1]) - p.cu_k[r];
    const std::int64_t q_len = static_cast<std::int64_t>(p.cu_q[r + 1]) - p.cu_q[r];
    return {r, k_len - q_len + (row - p.cu_q[r])};
}

// Unscaled score q·kbar of the full block j of request r, kv head hk, the mean recomputed from
// k: lane element d = lane + 32 s sums k[token, hk, d] over the block's Bs tokens in token order,
// then divides by Bs, exactly as gating.cu's block_means (elements past D are 0, as load_row
// gives them there); the dot product is warp_dot, as gating.cu's block_score. The same bits on
// every lane and on every call: the sums are plain fp32 additions in a fixed order (nothing to
// contract) and warp_dot uses explicit fmaf, so every inlined copy computes the same bits.
template <typename T, int kSteps>
__device__ __forceinline__ float block_score(const DecodeParams<T>& p, const float (&qr)[kSteps],
                                          int r, int hk, int j, int lane) {
    const Shape& s = p.shape;
    const std::int64_t t0 = static_cast<std::int64_t>(j) * s.block;
    const std::int64_t t1 = t0 + s.block;
    float mean[kSteps];
#pragma unroll
    for (int st = 0; st < kSteps; ++st) mean[st] = 0.0f;
    for (std::int64_t t = t0; t < t1; ++t) {
        const T* key = p.k + (cache_row(p, r, t) * s.heads_kv + hk) * s.head_dim;
#pragma unroll
        for (int st = 0; st < kSteps; ++st) {
            const int d = lane + kWarp * st;
            if (d < s.head_dim) mean[st] += to_float(key[d]);
        }
    }
#pragma unroll
    for (int st = 0; st < kSteps; ++st) {
        const int d = lane + kWarp * st;
        mean[st] = d < s.head_dim ? mean[st] / static_cast<float>(t1 - t0) : 0.0f;
    }
    return warp_dot(qr, mean);
}

// Writes the selection row of new token `row`, head h: gating.cu's select_query at the token's
// cache position. Warp-uniform throughout.
template <typename T, int kSteps>
__device__ void select_token(const DecodeParams<T>& p, std::int64_t row_index, int h, int lane) {
    const Shape& s = p.shape;
    const TokenPosition at = locate(p, row_index);
    const int own = static_cast<int>(at.position / s.block);  // blocks 0..own-1 are past (full)
    const int past = s.topk - 1;  // past blocks a query may add to its own
    std::int32_t* row = p.sel + (row_index * s.heads_q + h) * s.slots;

    if (past >= own || past == 0) {  // no past block to rank: no score is read
        write_selection_row(row, own, past, s.slots, lane, [](int) { return 0.0f; });
        return;
    }
    float qr[kSteps];
    load_row(p.q + (row_index * s.heads_q + h) * s.head_dim, s.head_dim, lane, qr);
    const int hk = h / s.group;
    write_selection_row(row, own, past, s.slots, lane,
                        [&](int j) { return block_score<T, kSteps>(p, qr, at.request, hk, j, lane); });
}

template <typename T, int kSteps>
__global__ void decode_select(DecodeParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.total_q * p.shape.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        select_token<T, kSteps>(p, w % p.total_q, static_cast<int>(w / p.total_q), lane);
    }
}

// forward.cu's forward_query at the token's cache position, keys read through cache_row.
// Online softmax; fp32 accumulation for 16-bit inputs, double for fp32 inputs (as forward.cu:
// an fp32 running sum over a long cache drifts by about the lse tolerance).
template <typename T, int kSteps>
__device__ void attend_token(const DecodeParams<T>& p, std::int64_t row_index, int h, int lane) {
    const Shape& s = p.shape;
    const TokenPosition at = locate(p, row_index);
    const std::int64_t kv_offset = static_cast<std::int64_t>(h / s.group) * s.head_dim;
    const std::int64_t q_offset = (row_index * s.heads_q + h) * s.head_dim;

    float qr[kSteps];
    load_row(p.q + q_offset, s.head_dim, lane, qr);
    using Acc = std::conditional_t<std::is_same_v<T, float>, double, float>;
    Acc acc[kSteps] = {};
    Acc m = -INFINITY;  // running max of the scaled scores
    Acc l = 0.0f;       // running sum of exp(score - m)

    const std::int32_t* row = p.sel + (row_index * s.heads_q + h) * s.slots;
    for_each_attended_key(s, row, at.position, [&](std::int64_t j) {
        const std::int64_t kv = cache_row(p, at.request, j) * s.heads_kv * s.head_dim + kv_offset;
        float kr[kSteps];
        load_row(p.k + kv, s.head_dim, lane, kr);
        const Acc score = static_cast<Acc>(s.scale * warp_dot(qr, kr));
        const Acc m_new = m > score ? m : score;
        const Acc rescale = exp(m - m_new);  // 0 on the first key (m = -inf)
        const Acc prob = exp(score - m_new);
        l = l * rescale + prob;
        float vr[kSteps];
        load_row(p.v + kv, s.head_dim, lane, vr);
#pragma unroll
        for (int r = 0; r < kSteps; ++r) acc[r] = acc[r] * rescale + prob * vr[r];
        m = m_new;
    });

    // l >= 1 for a valid row: the own block is always selected and holds the token's own key.
    const Acc inv_l = Acc{1} / l;
    float result[kSteps];
#pragma unroll
    for (int r = 0; r < kSteps; ++r) result[r] = static_cast<float>(acc[r] * inv_l);
    store_row(p.out + q_offset, s.head_dim, lane, result);
    if (lane == 0) p.lse[h * p.total_q + row_index] = static_cast<float>(m + log(l));
}

template <typename T, int kSteps>
__global__ void decode_attend(DecodeParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.total_q * p.shape.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        attend_token<T, kSteps>(p, w % p.total_q, static_cast<int>(w / p.total_q), lane);
    }
}

void check_decode(const DecodeArgs& args) {
    detail::check_problem(args.cache);
    const Problem& cache = args.cache;
    if (args.total_q < cache.batch() || args.total_q > cache.total_tokens()) {
        throw std::invalid_argument("naive decode: total_q " + std::to_string(args.total_q) +
                                    " outside [batch " + std::to_string(cache.batch()) +
                                    ", cached tokens " + std::to_string(cache.total_tokens()) +
                                    "] (every request has 1 <= q_len <= k_len)");
    }
    if (args.cu_q == nullptr || args.cu_k == nullptr) {
        throw std::invalid_argument("naive decode: cu_q and cu_k are required (cu_k also when paged)");
    }
    if (args.block_table != nullptr) {
        if (args.page_size <= 0 || args.table_width <= 0) {
            throw std::invalid_argument("naive decode: paged cache with page size " +
                                        std::to_string(args.page_size) + " and table width " +
                                        std::to_string(args.table_width));
        }
        if (static_cast<std::int64_t>(args.page_size) * args.table_width < cache.max_seqlen()) {
            throw std::invalid_argument(
                "naive decode: a table of " + std::to_string(args.table_width) + " pages of " +
                std::to_string(args.page_size) + " tokens cannot hold a cache of " +
                std::to_string(cache.max_seqlen()) + " tokens");
        }
    }
}

}  // namespace

// The selection is written straight into args.sel and the block means are recomputed inside
// the gating kernel: no workspace.
std::size_t decode_workspace_bytes(const Problem& cache, std::int64_t total_q) {
    static_cast<void>(cache);
    static_cast<void>(total_q);
    return 0;
}

void decode(const DecodeArgs& args) {
    check_decode(args);
    const Problem& cache = args.cache;
    dispatch(cache.dtype, cache.head_dim, [&](auto tag, auto steps) {
        using T = decltype(tag);
        constexpr int kSteps = decltype(steps)::value;
        const DecodeParams<T> p{make_shape(cache),
                                args.total_q,
                                args.cu_q,
                                args.cu_k,
                                static_cast<const T*>(args.q),
                                static_cast<const T*>(args.k),
                                static_cast<const T*>(args.v),
                                args.block_table,
                                args.page_size,
                                args.table_width,
                                args.sel,
                                static_cast<T*>(args.out),
                                args.lse};
        const unsigned blocks = grid_blocks(args.total_q * cache.heads_q, kWarpsPerBlock);
        if (args.gate) {
            decode_select<T, kSteps><<<blocks, kThreadsPerBlock, 0, args.stream>>>(p);
            MOBA_CHECK_LAUNCH();
        }
        decode_attend<T, kSteps><<<blocks, kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::naive
