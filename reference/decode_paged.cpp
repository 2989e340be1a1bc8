#include "reference/decode_paged.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace moba::ref {
namespace {

std::int64_t pages_for(int tokens, int page_size) { return (tokens + page_size - 1) / page_size; }

}  // namespace

void PagedKvCache::validate(const DecodeBatch& batch) const {
    batch.validate();
    const Problem& p = batch.cache;
    if (page_size < 1)
        throw std::invalid_argument("page_size " + std::to_string(page_size) + " must be >= 1");
    if (pages < 0) throw std::invalid_argument("pages " + std::to_string(pages) + " must be >= 0");
    const std::int64_t want =
        static_cast<std::int64_t>(pages) * page_size * p.heads_kv * p.head_dim;
    if (static_cast<std::int64_t>(k_pages.size()) != want ||
        static_cast<std::int64_t>(v_pages.size()) != want)
        throw std::invalid_argument(
            "page pools hold " + std::to_string(k_pages.size()) + " (k) and " +
            std::to_string(v_pages.size()) + " (v) elements; " + std::to_string(pages) +
            " pages of " + std::to_string(page_size) + " tokens need " + std::to_string(want));
    if (block_tables.size() != p.seqlens.size())
        throw std::invalid_argument(std::to_string(block_tables.size()) + " block tables for " +
                                    std::to_string(p.seqlens.size()) + " requests");
    for (std::size_t r = 0; r < block_tables.size(); ++r) {
        const std::int64_t needed = pages_for(p.seqlens[r], page_size);
        if (static_cast<std::int64_t>(block_tables[r].size()) < needed)
            throw std::invalid_argument(
                "request " + std::to_string(r) + " has " + std::to_string(block_tables[r].size()) +
                " pages in its block table; its " + std::to_string(p.seqlens[r]) + " tokens need " +
                std::to_string(needed));
        for (std::int64_t j = 0; j < needed; ++j) {
            const int id = block_tables[r][static_cast<std::size_t>(j)];
            if (id < 0 || id >= pages)
                throw std::invalid_argument("request " + std::to_string(r) +
                                            ", block table entry " + std::to_string(j) +
                                            ": page id " + std::to_string(id) + " is outside [0, " +
                                            std::to_string(pages) + ")");
        }
    }
}

PagedKvCache page_caches(const DecodeBatch& batch, const std::vector<float>& k,
                         const std::vector<float>& v, int page_size,
                         const std::vector<int>& page_order) {
    batch.validate();
    const Problem& p = batch.cache;
    if (page_size < 1)
        throw std::invalid_argument("page_size " + std::to_string(page_size) + " must be >= 1");
    if (static_cast<std::int64_t>(k.size()) != p.kv_elems() ||
        static_cast<std::int64_t>(v.size()) != p.kv_elems())
        throw std::invalid_argument("k, v hold " + std::to_string(k.size()) + ", " +
                                    std::to_string(v.size()) + " elements; the caches need " +
                                    std::to_string(p.kv_elems()));
    std::int64_t needed = 0;
    for (int len : p.seqlens) needed += pages_for(len, page_size);
    if (static_cast<std::int64_t>(page_order.size()) != needed)
        throw std::invalid_argument("page_order has " + std::to_string(page_order.size()) +
                                    " entries; the caches need " + std::to_string(needed) +
                                    " pages");
    std::vector<int> sorted = page_order;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i)
        if (sorted[i] != static_cast<int>(i))
            throw std::invalid_argument("page_order is not a permutation of [0, " +
                                        std::to_string(needed) + ")");

    const std::int64_t row =
        static_cast<std::int64_t>(p.heads_kv) * p.head_dim;  // one token of one cache
    PagedKvCache cache;
    cache.page_size = page_size;
    cache.pages = static_cast<int>(needed);
    const auto pool = static_cast<std::size_t>(needed * page_size * row);
    cache.k_pages.assign(pool, std::numeric_limits<float>::quiet_NaN());
    cache.v_pages.assign(pool, std::numeric_limits<float>::quiet_NaN());
    std::int64_t next = 0, cu = 0;
    for (int len : p.seqlens) {
        std::vector<int>& table = cache.block_tables.emplace_back();
        for (std::int64_t j = 0; j < pages_for(len, page_size); ++j)
            table.push_back(page_order[next++]);
        for (int t = 0; t < len; ++t) {
            const std::int64_t src = (cu + t) * row;
            const std::int64_t dst =
                (static_cast<std::int64_t>(table[static_cast<std::size_t>(t / page_size)]) *
                     page_size +
                 t % page_size) *
                row;
            std::copy_n(k.begin() + src, row, cache.k_pages.begin() + dst);
            std::copy_n(v.begin() + src, row, cache.v_pages.begin() + dst);
        }
        cu += len;
    }
    return cache;
}

PackedKv gather_caches(const DecodeBatch& batch, const PagedKvCache& cache) {
    cache.validate(batch);
    const Problem& p = batch.cache;
    const std::int64_t row = static_cast<std::int64_t>(p.heads_kv) * p.head_dim;
    PackedKv packed;
    packed.k.resize(static_cast<std::size_t>(p.kv_elems()));
    packed.v.resize(static_cast<std::size_t>(p.kv_elems()));
    std::int64_t cu = 0;
    for (std::size_t r = 0; r < p.seqlens.size(); ++r) {
        for (int t = 0; t < p.seqlens[r]; ++t) {
            const std::int64_t page =
                cache.block_tables[r][static_cast<std::size_t>(t / cache.page_size)];
            const std::int64_t src = (page * cache.page_size + t % cache.page_size) * row;
            std::copy_n(cache.k_pages.begin() + src, row, packed.k.begin() + (cu + t) * row);
            std::copy_n(cache.v_pages.begin() + src, row, packed.v.begin() + (cu + t) * row);
        }
        cu += p.seqlens[r];
    }
    return packed;
}

DecodeResult decode_forward_paged(const DecodeBatch& batch, const std::vector<float>& q_new,
                                  const PagedKvCache& cache) {
    const PackedKv packed = gather_caches(batch, cache);
    return decode_forward(batch, q_new, packed.k, packed.v);
}

}  // namespace moba::ref
