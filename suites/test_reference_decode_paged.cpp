// The paged KV cache of the float64 decode truth (reference/decode_paged.hpp, SEMANTICS.md §9):
// storage only, so decode from shuffled pages is bitwise decode from the packed caches; bad
// block tables are refused naming the value.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "reference/decode_paged.hpp"
#include "test_util.hpp"

namespace moba {
namespace {

using test::expect_error;

// Block 64, pages of 24 tokens: a page size that divides neither the block nor any cache length.
ref::DecodeBatch varlen_batch() {
    ref::DecodeBatch b;
    b.cache.seqlens = {1, 300, 1025, 130};
    b.cache.heads_q = 4;
    b.cache.heads_kv = 2;
    b.cache.head_dim = 32;
    b.cache.block = 64;
    b.cache.topk = 3;
    b.cache.dtype = DType::f32;
    b.q_lens = {1, 1, 7, 3};
    return b;
}
constexpr int kPageSize = 24;

struct Caches {
    std::vector<float> q_new, k, v;
};
Caches random_caches(const ref::DecodeBatch& b) {
    const Problem& p = b.cache;
    return {test::normal_values(static_cast<std::size_t>(b.total_q() * p.heads_q * p.head_dim), 11),
            test::normal_values(static_cast<std::size_t>(p.kv_elems()), 12),
            test::normal_values(static_cast<std::size_t>(p.kv_elems()), 13)};
}

std::vector<int> shuffled_pages(const ref::DecodeBatch& b, int page_size) {
    int needed = 0;
    for (int len : b.cache.seqlens) needed += (len + page_size - 1) / page_size;
    std::vector<int> order(static_cast<std::size_t>(needed));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(99));
    return order;
}

TEST(ReferenceDecodePaged, ShuffledPagesGiveTheContiguousDecodeBitwise) {
    const ref::DecodeBatch b = varlen_batch();
    ASSERT_NE(b.cache.block % kPageSize, 0);
    for (int len : b.cache.seqlens) ASSERT_TRUE(len < kPageSize || len % kPageSize != 0) << len;
    const Caches c = random_caches(b);
    const std::vector<int> order = shuffled_pages(b, kPageSize);
    ASSERT_FALSE(std::is_sorted(order.begin(), order.end()));
    const ref::PagedKvCache paged = ref::page_caches(b, c.k, c.v, kPageSize, order);

    const ref::DecodeResult want = ref::decode_forward(b, c.q_new, c.k, c.v);
    const ref::DecodeResult got = ref::decode_forward_paged(b, c.q_new, paged);
    EXPECT_EQ(got.gating.selection.slots, want.gating.selection.slots);
    EXPECT_EQ(got.gating.selection.blocks, want.gating.selection.blocks);
    ASSERT_EQ(got.forward.out.size(), want.forward.out.size());
    ASSERT_EQ(got.forward.lse.size(), want.forward.lse.size());
    // Bitwise: memcmp-like equality of the doubles (no NaN can appear: every row attends itself).
    for (std::size_t i = 0; i < want.forward.out.size(); ++i)
        ASSERT_EQ(got.forward.out[i], want.forward.out[i]) << "out element " << i;
    for (std::size_t i = 0; i < want.forward.lse.size(); ++i)
        ASSERT_EQ(got.forward.lse[i], want.forward.lse[i]) << "lse element " << i;
}

// The gather must read the page the table names: swapping two table entries of a request
// changes its keys, and so its output (the test above could not fail if pages were ignored).
TEST(ReferenceDecodePaged, TheBlockTableIsWhatIsRead) {
    const ref::DecodeBatch b = varlen_batch();
    const Caches c = random_caches(b);
    ref::PagedKvCache paged =
        ref::page_caches(b, c.k, c.v, kPageSize, shuffled_pages(b, kPageSize));
    const ref::PackedKv packed = ref::gather_caches(b, paged);
    EXPECT_EQ(packed.k, c.k);
    EXPECT_EQ(packed.v, c.v);
    std::swap(paged.block_tables[2][0], paged.block_tables[2][1]);
    EXPECT_NE(ref::gather_caches(b, paged).k, c.k);
}

TEST(ReferenceDecodePaged, BadBlockTablesAreRefusedNamingTheValue) {
    const ref::DecodeBatch b = varlen_batch();
    const Caches c = random_caches(b);
    const ref::PagedKvCache good =
        ref::page_caches(b, c.k, c.v, kPageSize, shuffled_pages(b, kPageSize));

    ref::PagedKvCache out_of_range = good;
    out_of_range.block_tables[1][2] = good.pages;
    expect_error([&] { out_of_range.validate(b); }, "request 1, block table entry 2: page id " +
                                                        std::to_string(good.pages) + " is outside");
    ref::PagedKvCache negative = good;
    negative.block_tables[3][0] = -1;
    expect_error([&] { ref::gather_caches(b, negative); }, "page id -1 is outside");

    ref::PagedKvCache too_few = good;
    too_few.block_tables[2].pop_back();  // 1025 tokens need 43 pages of 24
    expect_error([&] { ref::decode_forward_paged(b, c.q_new, too_few); },
                 "request 2 has 42 pages in its block table; its 1025 tokens need 43");

    ref::PagedKvCache missing = good;
    missing.block_tables.pop_back();
    expect_error([&] { missing.validate(b); }, "3 block tables for 4 requests");

    ref::PagedKvCache bad_page_size = good;
    bad_page_size.page_size = 0;
    expect_error([&] { bad_page_size.validate(b); }, "page_size 0");

    ref::PagedKvCache short_pool = good;
    short_pool.k_pages.pop_back();
    expect_error([&] { short_pool.validate(b); }, "page pools hold");

    // Preallocated table entries past the last token are not read, so they may be anything.
    ref::PagedKvCache preallocated = good;
    preallocated.block_tables[0].push_back(-7);
    EXPECT_NO_THROW(preallocated.validate(b));

    expect_error(
        [&] {
            ref::page_caches(b, c.k, c.v, kPageSize, {0, 1, 2});
        },
        "page_order has 3 entries");
}

}  // namespace
}  // namespace moba
