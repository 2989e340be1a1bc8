// CPU checks of the dense kernels' CTA order (kernels/wgmma/l2_sections.hpp): every (head, tile)
// pair gets exactly one CTA whatever the section size, the last section holds the remaining heads,
// heads run fastest inside a section and sections one after another, and the section size follows
// its rule (a power of two of streams in kL2SectionBytes, whole kv groups, at most every head).
// No GPU needed.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/wgmma/l2_sections.hpp"

namespace moba::wgmma {
namespace {

TEST(L2Sections, EveryHeadAndTileGetsExactlyOneCta) {
    for (int heads : {1, 3, 5, 8, 32})
        for (int tiles : {1, 2, 7, 64})
            for (int section : {1, 2, 3, 4, 8, 32}) {
                if (section > heads) continue;
                SCOPED_TRACE(testing::Message() << heads << " heads, " << tiles << " tiles, section " << section);
                std::vector<int> seen(static_cast<std::size_t>(heads * tiles), 0);
                for (unsigned x = 0; x < static_cast<unsigned>(heads * tiles); ++x) {
                    const SectionSlot s = section_order(x, heads, tiles, section);
                    ASSERT_GE(s.head, 0);
                    ASSERT_LT(s.head, heads);
                    ASSERT_GE(s.rank, 0);
                    ASSERT_LT(s.rank, tiles);
                    ++seen[static_cast<std::size_t>(s.head * tiles + s.rank)];
                }
                for (int n : seen) ASSERT_EQ(n, 1);
            }
}

TEST(L2Sections, SectionsRunInTurnWithHeadsFastestAndTheFirstRankFirst) {
    // 5 heads in sections of 2: heads {0, 1}, then {2, 3}, then the remainder {4}.
    const int heads = 5, tiles = 3, section = 2;
    std::vector<SectionSlot> order;
    for (unsigned x = 0; x < static_cast<unsigned>(heads * tiles); ++x) order.push_back(section_order(x, heads, tiles, section));
    const std::vector<std::pair<int, int>> expected = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2},
                                                       {2, 0}, {3, 0}, {2, 1}, {3, 1}, {2, 2}, {3, 2},
                                                       {4, 0}, {4, 1}, {4, 2}};
    ASSERT_EQ(order.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(order[i].head, expected[i].first) << "CTA " << i;
        EXPECT_EQ(order[i].rank, expected[i].second) << "CTA " << i;
    }
    // One section of every head is the plain heads-fastest order.
    for (unsigned x = 0; x < static_cast<unsigned>(heads * tiles); ++x) {
        const SectionSlot s = section_order(x, heads, tiles, heads);
        EXPECT_EQ(s.head, static_cast<int>(x % heads));
        EXPECT_EQ(s.rank, static_cast<int>(x / heads));
    }
}

TEST(L2Sections, SectionSizeFollowsTheL2Budget) {
    const std::int64_t mib = std::int64_t{1} << 20;
    // 128K tokens, D 128, bf16: one kv head's K and V are 64 MB, more than the budget: one stream,
    // that is one query head under MHA and the whole group of 4 under GQA 32:8.
    const std::int64_t kv_128k = 2 * 131072 * 128 * 2;
    EXPECT_EQ(l2_section_heads(kv_128k, 1, 32), 1);
    EXPECT_EQ(l2_section_heads(kv_128k, 4, 32), 4);
    // 32K: 16 MB streams, two fit in 32 MB.
    EXPECT_EQ(l2_section_heads(16 * mib, 1, 16), 2);
    // Exactly the budget fits; one byte more halves the section.
    EXPECT_EQ(l2_section_heads(kL2SectionBytes / 8, 1, 64), 8);
    EXPECT_EQ(l2_section_heads(kL2SectionBytes / 8 + 1, 1, 64), 4);
    // Short sequences: every head in one section, never more than there are.
    EXPECT_EQ(l2_section_heads(1, 1, 12), 12);
    EXPECT_EQ(l2_section_heads(1, 4, 32), 32);
    EXPECT_EQ(l2_section_heads(3 * mib, 3, 12), 12);
    // 32 MB / 5 MB streams: 4 streams of 3 heads (a power of two of streams, whole groups).
    EXPECT_EQ(l2_section_heads(5 * mib, 3, 48), 12);
    // test_dense_gpu's WgmmaDenseIsRightOverSeveralL2Sections relies on these: 32K MHA with 5
    // heads runs sections of 2 + 2 + 1 (causal, dQ, dK/dV alike); 64K GQA 6:2 runs two kv groups
    // of 3 (causal, dQ) and two dK/dV sections of one kv head (its Q/dO stream is 3 heads).
    EXPECT_EQ(l2_section_heads(2 * 32768 * 128 * 2, 1, 5), 2);
    EXPECT_EQ(l2_section_heads(2 * 65536 * 128 * 2, 3, 6), 3);
    EXPECT_EQ(l2_section_heads(2 * 65536 * 128 * 2 * 3, 1, 2), 1);
}

}  // namespace
}  // namespace moba::wgmma
