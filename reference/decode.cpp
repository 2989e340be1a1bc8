#include "reference/decode.hpp"

#include <stdexcept>
#include <string>

namespace moba::ref {

void DecodeBatch::validate() const {
    const std::vector<int>& k_lens = cache.seqlens;
    if (k_lens.empty()) throw std::invalid_argument("a decode batch needs at least one request");
    if (k_lens.size() != q_lens.size())
        throw std::invalid_argument("decode batch: " + std::to_string(k_lens.size()) + " cache lengths but " +
                                    std::to_string(q_lens.size()) + " query lengths");
    for (std::size_t r = 0; r < k_lens.size(); ++r)
        if (q_lens[r] < 1 || q_lens[r] > k_lens[r])
            throw std::invalid_argument("decode batch: request " + std::to_string(r) + " has q_len " +
                                        std::to_string(q_lens[r]) + " (1 <= q_len <= k_len = " +
                                        std::to_string(k_lens[r]) + ")");
    cache.validate();
}

std::int64_t DecodeBatch::total_q() const {
    std::int64_t total = 0;
    for (int q : q_lens) total += q;
    return total;
}

std::vector<std::int64_t> DecodeBatch::query_positions() const {
    std::vector<std::int64_t> positions;
    positions.reserve(static_cast<std::size_t>(total_q()));
    std::int64_t cu = 0;
    for (std::size_t r = 0; r < q_lens.size(); ++r) {
        const int k_len = cache.seqlens[r];
        for (int t = 0; t < q_lens[r]; ++t) positions.push_back(cu + k_len - q_lens[r] + t);
        cu += k_len;
    }
    return positions;
}

DecodeResult decode_forward(const DecodeBatch& batch, const std::vector<float>& q_new,
                            const std::vector<float>& k, const std::vector<float>& v) {
    batch.validate();
    const Problem& p = batch.cache;
    const std::int64_t want_q = batch.total_q() * p.heads_q * p.head_dim;
    if (static_cast<std::int64_t>(q_new.size()) != want_q)
        throw std::invalid_argument("q_new has " + std::to_string(q_new.size()) + " elements; the batch needs " +
                                    std::to_string(want_q));
    RowInputs rows;
    rows.tokens = batch.query_positions();
    rows.q_rows = q_new;
    rows.k = &k;  // forward_rows and gating_rows check the k, v sizes
    rows.v = &v;
    DecodeResult result;
    result.gating = gating_rows(p, rows);
    rows.sel_rows = result.gating.selection;
    result.forward = forward_rows(p, rows);
    return result;
}

}  // namespace moba::ref
