#include "harness/flops.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moba {

std::string_view to_string(Phase phase) {
    switch (phase) {
        case Phase::fwd: return "fwd";
        case Phase::bwd: return "bwd";
        case Phase::fwdbwd: return "fwdbwd";
    }
    return "unknown";
}

Phase parse_phase(std::string_view text) {
    for (Phase p : {Phase::fwd, Phase::bwd, Phase::fwdbwd})
        if (to_string(p) == text) return p;
    throw std::invalid_argument("unknown phase '" + std::string(text) + "' (expected fwd, bwd or fwdbwd)");
}

double moba_pairs(const Problem& p) {
    double pairs = 0;
    for (int len : p.seqlens) {
        const std::int64_t bs = p.block;
        const std::int64_t blocks = (len + bs - 1) / bs;
        for (std::int64_t b = 0; b < blocks; ++b) {
            const std::int64_t first = b * bs, last = std::min<std::int64_t>(len, first + bs) - 1;
            const std::int64_t rows = last - first + 1;
            const double past = static_cast<double>(std::min<std::int64_t>(p.topk - 1, b)) * static_cast<double>(bs);
            // own block: query first + r attends r + 1 keys
            pairs += static_cast<double>(rows) * past + 0.5 * static_cast<double>(rows) * static_cast<double>(rows + 1);
        }
    }
    return pairs * p.heads_q;
}

double dense_pairs(const Problem& p) { return p.dense_pairs(); }

double attention_flops(const Problem& p, double pairs, Phase phase) {
    const double fwd = 4.0 * p.head_dim * pairs;
    switch (phase) {
        case Phase::fwd: return fwd;
        case Phase::bwd: return 2.5 * fwd;
        case Phase::fwdbwd: return 3.5 * fwd;
    }
    return fwd;
}

double gating_flops(const Problem& p) {
    const double means = static_cast<double>(p.total_tokens()) * p.heads_kv * p.head_dim;
    double past_blocks = 0;  // sum over queries of b(i)
    for (int len : p.seqlens) {
        const std::int64_t bs = p.block;
        for (std::int64_t b = 0; b * bs < len; ++b)
            past_blocks += static_cast<double>(b) * static_cast<double>(std::min<std::int64_t>(len, (b + 1) * bs) - b * bs);
    }
    return means + 2.0 * p.head_dim * past_blocks * p.heads_q;
}

}  // namespace moba
