// The float64 truth of MoBA decode (SEMANTICS.md §9): new query tokens appended to cached
// sequences, chunked prefill included. A batch of requests, request r with cache.seqlens[r]
// tokens in its cache (its new tokens included, as a cache is written before attention) and the
// last q_lens[r] of them new. New token t of request r sits at position
// cache.seqlens[r] - q_lens[r] + t of its sequence, and attends, gates and ties exactly as that
// position does in prefill: decode is a subset of prefill's rows, which is how this reference
// computes it (gating_rows, forward_rows over the whole cache), so it agrees with the prefill
// reference bitwise by construction.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "reference/reference.hpp"

namespace moba::ref {

struct DecodeBatch {
    Problem cache;            // the caches as a prefill problem: seqlens = cached + new tokens
    std::vector<int> q_lens;  // new tokens of each request, 1 <= q_len <= its cache length

    // Throws std::invalid_argument naming the request and value when a length is bad, or what
    // Problem::validate names for the shape.
    void validate() const;
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
