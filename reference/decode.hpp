// The float64 truth of MoBA decode (SEMANTICS.md §9): new query tokens appended to cached
// sequences, chunked prefill included. A batch of requests, request r with k_len[r] tokens in
// its cache (its new tokens included, as a cache is written before attention) and the last
// q_len[r] of them new. New token t of request r sits at position k_len[r] - q_len[r] + t of its
// sequence, and attends, gates and ties exactly as that position does in prefill: decode is a
// subset of prefill's rows, which is how this reference computes it (gating_rows, forward_rows
// over the whole cache), so it agrees with the prefill reference bitwise by construction.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "reference/reference.hpp"

namespace moba::ref {

struct DecodeBatch {
    std::vector<int> k_lens;  // cached + new tokens of each request (>= 1)
    std::vector<int> q_lens;  // new tokens of each request, 1 <= q_len <= k_len
    int heads_q = 0, heads_kv = 0, head_dim = 0, block = 0, topk = 0;
    DType dtype = DType::bf16;
    double softmax_scale = 0.0;  // 0: 1/sqrt(head_dim)

    // The prefill problem over the caches (seqlens = k_lens). Throws std::invalid_argument
    // naming the request and value when a length is bad or the shape is (Problem::validate).
    Problem cache_problem() const;
    std::int64_t total_q() const;
    // Global packed index, in the cache's [total_k] layout, of every new token, request by
    // request: cu_k[r] + k_len[r] - q_len[r] + t.
    std::vector<std::int64_t> query_positions() const;
};

struct DecodeResult {
    GatingResult gating;  // selection [total_q, Hq, slots] and boundary data [total_q, Hq]
    Forward forward;      // out [total_q, Hq, D], lse [Hq, total_q]
};

// q_new [total_q, Hq, D] (the new tokens, request by request); k, v [total_k, Hkv, D] the caches
// (new tokens included). Throws std::invalid_argument on a size mismatch or a bad batch.
DecodeResult decode_forward(const DecodeBatch& batch, const std::vector<float>& q_new,
                            const std::vector<float>& k, const std::vector<float>& v);

}  // namespace moba::ref
