#include "kernels/decode/layout.hpp"

#include <algorithm>

namespace moba::split_decode::detail {
namespace {

constexpr std::size_t kAlign = 256;
// Keys per attention chunk start at four 64-key tiles: fewer and the per-chunk partial (D + 2
// floats per interested row) costs a noticeable share of the chunk's K/V bytes.
constexpr std::int64_t kMinSpan = 256;
constexpr std::int64_t kMaxSpan = std::int64_t{1} << 30;
// Dense decode: grow the unit while this many work items remain (about 20 rounds of the
// H200's resident CTAs, so the last round's imbalance stays small); a fixed number rather than
// the device's, so the partials, and therefore the bits of the result, are the same on any GPU.
constexpr std::int64_t kDenseTargetItems = 8192;
// Partials beyond this (long chunked prefills) make chunks longer instead.
constexpr std::size_t kPartialCap = std::size_t{1} << 30;
// The gating's score buffer: beyond this, new tokens are gated in batches.
constexpr std::size_t kScoreCap = std::size_t{128} << 20;

class Carver {
public:
    Region take(std::size_t bytes) {
        const Region region{next_, bytes};
        next_ += (bytes + kAlign - 1) / kAlign * kAlign;
        return region;
    }
    std::size_t total() const { return next_; }

private:
    std::size_t next_ = 0;
};

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

std::size_t bytes_of(std::int64_t count, std::size_t each) {
    return static_cast<std::size_t>(count) * each;
}

// One partial: (m, l) and D floats of output.
std::size_t partial_bytes(std::int64_t partials, int head_dim) {
    return bytes_of(partials, (2 + static_cast<std::size_t>(head_dim)) * sizeof(float));
}

// Units of `span` keys over all requests.
std::int64_t units(const Problem& cache, std::int64_t span) {
    std::int64_t sum = 0;
    for (int k_len : cache.seqlens) sum += ceil_div(k_len, span);
    return sum;
}

}  // namespace

MobaLayout moba_layout(const Problem& cache, std::int64_t total_q) {
    MobaLayout layout;
    const std::int64_t block = cache.block;
    const std::int64_t heads_kv = cache.heads_kv;
    const std::int64_t batch = cache.batch();
    const std::int64_t rows_heads = total_q * cache.heads_q;
    const auto partials = [&](std::int64_t span) {
        return rows_heads * cache.sel_slots() * ceil_div(block, span);
    };
    std::int64_t span = kMinSpan;
    while (span < block && span < kMaxSpan &&
           partial_bytes(partials(span), cache.head_dim) > kPartialCap)
        span *= 2;
    layout.span = static_cast<int>(span);
    layout.chunks_per_block = static_cast<int>(ceil_div(block, span));
    layout.partials = partials(span);
    layout.max_items = units(cache, block) * heads_kv * layout.chunks_per_block;

    // A token at position i has i / Bs past blocks; none needs scores when top-k - 1 covers
    // them all, or is 0 (the own block alone).
    const int max_k = cache.max_seqlen();
    if (cache.topk > 1 && cache.topk - 1 < (max_k - 1) / cache.block) {
        layout.score_stride = max_k / cache.block;  // >= every own block index
        const std::size_t row_bytes = bytes_of(cache.heads_q, sizeof(float)) *
                                      static_cast<std::size_t>(layout.score_stride);
        const auto fit = static_cast<std::int64_t>(kScoreCap / row_bytes);
        layout.score_rows = std::clamp<std::int64_t>(fit, 1, total_q);
    }

    const std::int64_t total_k = cache.total_tokens();
    const std::int64_t mean_slots = total_k / block;
    Carver carve;
    layout.means = carve.take(bytes_of(mean_slots * heads_kv * cache.head_dim, sizeof(float)));
    layout.union_list = carve.take(bytes_of((mean_slots + batch) * heads_kv, sizeof(std::int32_t)));
    layout.union_count = carve.take(bytes_of(batch * heads_kv, sizeof(std::int32_t)));
    layout.item_prefix = carve.take(bytes_of(batch * heads_kv + 1, sizeof(std::int64_t)));
    layout.scores = carve.take(bytes_of(layout.score_rows * cache.heads_q * layout.score_stride,
                                        sizeof(float)));
    layout.partial_ml = carve.take(bytes_of(layout.partials, 2 * sizeof(float)));
    layout.partial_o = carve.take(bytes_of(layout.partials * cache.head_dim, sizeof(float)));
    layout.total_bytes = carve.total();
    return layout;
}

DenseLayout dense_layout(const Problem& cache, std::int64_t total_q) {
    DenseLayout layout;
    const std::int64_t heads_kv = cache.heads_kv;
    const std::int64_t batch = cache.batch();
    const std::int64_t max_k = cache.max_seqlen();
    // Every request has one new token at least; the rest may sit in the longest request.
    const std::int64_t extra_rows = std::max<std::int64_t>(0, total_q - batch);
    const auto partials = [&](std::int64_t span) {
        return cache.heads_q * (units(cache, span) + extra_rows * ceil_div(max_k, span));
    };
    std::int64_t span = kMinSpan;
    while (span < max_k && span < kMaxSpan && heads_kv * units(cache, 2 * span) >= kDenseTargetItems)
        span *= 2;
    while (span < max_k && span < kMaxSpan &&
           partial_bytes(partials(span), cache.head_dim) > kPartialCap)
        span *= 2;
    layout.span = static_cast<int>(span);
    layout.partials = partials(span);
    layout.max_items = heads_kv * units(cache, span);

    Carver carve;
    layout.item_prefix = carve.take(bytes_of(batch * heads_kv + 1, sizeof(std::int64_t)));
    layout.partial_base = carve.take(bytes_of(batch + 1, sizeof(std::int64_t)));
    layout.partial_ml = carve.take(bytes_of(layout.partials, 2 * sizeof(float)));
    layout.partial_o = carve.take(bytes_of(layout.partials * cache.head_dim, sizeof(float)));
    layout.total_bytes = carve.total();
    return layout;
}

}  // namespace moba::split_decode::detail
