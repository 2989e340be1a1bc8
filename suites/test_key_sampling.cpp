// The key sample of the backward check (harness/key_sampling.hpp): block work against brute
// force, the budget, the attending rows, a sink block skipped and said so, the last-token
// fallback of full causal attention, and determinism.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "harness/inputs.hpp"
#include "harness/key_sampling.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

using test::make_problem;

// Brute force: the keys attended by (t, h) and whether it selects a block.
std::int64_t keys_of(const Problem& p, const Selection& sel, std::int64_t t, int h, std::int64_t i) {
    std::int64_t keys = 0;
    for (int slot = 0; slot < sel.slots; ++slot) {
        const std::int32_t b = sel.blocks[(t * p.heads_q + h) * sel.slots + slot];
        if (b < 0) continue;
        keys += std::min<std::int64_t>(std::int64_t{b} * p.block + p.block, i + 1) - std::int64_t{b} * p.block;
    }
    return keys;
}
bool selects(const Problem& p, const Selection& sel, std::int64_t t, int h, std::int64_t block) {
    const std::int32_t* row = sel.blocks.data() + (t * p.heads_q + h) * sel.slots;
    return std::find(row, row + sel.slots, block) != row + sel.slots;
}

// (work, attending pairs) of block b of sequence s, enumerated.
std::pair<double, std::int64_t> brute_block(const Problem& p, const Selection& sel, int s, std::int64_t b) {
    const auto cu = p.cu_seqlens();
    double work = 0;
    std::int64_t pairs = 0;
    for (std::int64_t t = cu[s]; t < cu[s + 1]; ++t)
        for (int h = 0; h < p.heads_q; ++h)
            if (selects(p, sel, t, h, b)) {
                ++pairs;
                work += static_cast<double>(keys_of(p, sel, t, h, t - cu[s])) * p.head_dim;
            }
    return {work, pairs};
}

// Tokens attending one of the keys with some head, enumerated.
std::vector<std::int64_t> brute_attending(const Problem& p, const Selection* sel, const std::vector<std::int64_t>& keys) {
    const auto cu = p.cu_seqlens();
    std::vector<std::int64_t> out;
    for (std::int64_t t = 0; t < p.total_tokens(); ++t) {
        const auto s = std::upper_bound(cu.begin(), cu.end(), t) - cu.begin() - 1;
        bool any = false;
        for (std::int64_t key : keys)
            for (int h = 0; h < p.heads_q; ++h)
                any = any || (key >= cu[s] && key <= t &&
                              (sel == nullptr || selects(p, *sel, t, h, (key - cu[s]) / p.block)));
        if (any) out.push_back(t);
    }
    return out;
}

// A two-slot selection of one sequence: slots_of(t, h) gives the row's two entries (-1: none).
template <typename SlotsOf>
Selection two_slot_selection(const Problem& p, SlotsOf slots_of) {
    Selection sel;
    sel.slots = p.sel_slots();
    for (std::int64_t t = 0; t < p.total_tokens(); ++t)
        for (int h = 0; h < p.heads_q; ++h) {
            const auto [first, second] = slots_of(t, h);
            sel.blocks.insert(sel.blocks.end(), {first, second});
        }
    return sel;
}

TEST(KeySampling, BlocksFitTheBudgetAndRowsAreTheAttendingOnes) {
    const Problem p = make_problem({200, 77, 130}, 4, 2, 16, 16, 3, DType::bf16);
    const Selection sel = ref::gating(p, make_inputs(p, 5)).selection;
    const auto cu = p.cu_seqlens();
    for (double budget : {1e5, 3e5, 1e9}) {
        const KeySample k = sample_keys(p, &sel, budget, 3, 4, 17);
        EXPECT_EQ(k.blocks_total, 13 + 5 + 9);
        EXPECT_FALSE(k.blocks.empty()) << budget;
        EXPECT_LE(static_cast<int>(k.blocks.size()), 3);
        EXPECT_LE(k.work, budget);
        double work = 0;
        for (const KeyBlock& b : k.blocks) {
            const auto [w, pairs] = brute_block(p, sel, b.seq, b.block);
            EXPECT_DOUBLE_EQ(b.work, w);
            EXPECT_EQ(b.attending_pairs, pairs);
            work += w;
            // First and last token of the block are keys.
            const std::int64_t t0 = cu[b.seq] + b.block * p.block;
            const std::int64_t t1 = std::min<std::int64_t>(t0 + p.block, cu[b.seq + 1]) - 1;
            EXPECT_TRUE(std::binary_search(k.keys.begin(), k.keys.end(), t0));
            EXPECT_TRUE(std::binary_search(k.keys.begin(), k.keys.end(), t1));
        }
        EXPECT_DOUBLE_EQ(k.work, work);
        EXPECT_TRUE(std::is_sorted(k.keys.begin(), k.keys.end()));
        EXPECT_LE(k.keys.size(), 4 * k.blocks.size());
        EXPECT_EQ(k.query_tokens, brute_attending(p, &sel, k.keys));
        std::int64_t over = 0;
        for (int s = 0; s < p.batch(); ++s)
            for (std::int64_t b = 0; b < (cu[s + 1] - cu[s] + p.block - 1) / p.block; ++b)
                over += brute_block(p, sel, s, b).first > budget;
        EXPECT_EQ(k.blocks_over_budget, over);
    }
    // Seeded: the same sample again, another with another seed (blocks drawn in another order).
    const KeySample a = sample_keys(p, &sel, 1e9, 3, 4, 17);
    EXPECT_EQ(a.keys, sample_keys(p, &sel, 1e9, 3, 4, 17).keys);
    EXPECT_NE(a.keys, sample_keys(p, &sel, 1e9, 3, 4, 18).keys);
}

// Every row selects block 0 (a sink): it is the most attended block; over budget, it is skipped
// and the sample says so; other blocks are still checked.
TEST(KeySampling, ASinkOverBudgetIsReportedNotHidden) {
    const Problem p = make_problem({256}, 2, 1, 8, 16, 2, DType::bf16);
    const Selection sel = two_slot_selection(p, [](std::int64_t t, int) {
        const auto own = static_cast<std::int32_t>(t / 16);
        return own == 0 ? std::pair{0, -1} : std::pair{0, own};
    });
    const auto [sink_work, sink_pairs] = brute_block(p, sel, 0, 0);
    EXPECT_EQ(sink_pairs, 512);
    const KeySample k = sample_keys(p, &sel, sink_work / 2, 4, 4, 3);
    EXPECT_EQ(k.most_attended.block, 0);
    EXPECT_EQ(k.most_attended.attending_pairs, 512);
    EXPECT_FALSE(k.most_attended_checked);
    EXPECT_EQ(k.blocks_over_budget, 1);
    EXPECT_EQ(k.blocks.size(), 4u);
    for (const KeyBlock& b : k.blocks) EXPECT_NE(b.block, 0);
    // Every other block costs its own 16 rows, 2 heads x (16 + 1..16 keys) x D 8 = 6272: under
    // that no block fits, and the tail of the last block is taken from token 255 back (row t
    // costs 2 x (t - 223) x 8) while it fits: 15 keys, 241..255, their rows' work 6000.
    const KeySample tails = sample_keys(p, &sel, 6271, 4, 4, 3);
    EXPECT_TRUE(tails.last_tokens_only);
    EXPECT_TRUE(tails.blocks.empty());
    std::vector<std::int64_t> tail(15);
    std::iota(tail.begin(), tail.end(), std::int64_t{241});
    EXPECT_EQ(tails.keys, tail);
    EXPECT_EQ(tails.query_tokens, tail);
    EXPECT_EQ(tails.query_tokens, brute_attending(p, &sel, tails.keys));
    EXPECT_DOUBLE_EQ(tails.work, 6000);
    // With room for it, the sink is the first block taken.
    const KeySample all = sample_keys(p, &sel, 10 * sink_work, 4, 4, 3);
    EXPECT_TRUE(all.most_attended_checked);
    EXPECT_EQ(all.blocks.front().block, 0);
}

// Every whole block over budget (its own rows cost 33 280): the tail of a block that later rows
// select is checked before the sequence's last tokens. Block 2 (tokens 128..191) is selected by
// rows 250..255 with head 0: 6 pairs attending 64 + 59..64 keys, 753 keys x D 8 = 6024. Its last
// tokens' own rows cost 2 heads x 64, 63, 62, 61 keys x D 8 = 1024, 1008, 992, 976: under
// 10 000, keys 191, 190, 189 fit (9048), 188 does not.
TEST(KeySampling, ATailOfABlockThatLaterRowsSelectIsCheckedWhenNoWholeBlockFits) {
    const Problem p = make_problem({256}, 2, 1, 8, 64, 2, DType::bf16);
    const Selection sel = two_slot_selection(p, [](std::int64_t t, int h) {
        const auto own = static_cast<std::int32_t>(t / 64);
        return t >= 250 && h == 0 ? std::pair{2, own} : std::pair{own, -1};
    });
    const KeySample k = sample_keys(p, &sel, 10000, 4, 4, 3);
    EXPECT_EQ(k.blocks_over_budget, 4);
    EXPECT_TRUE(k.block_tails);
    EXPECT_FALSE(k.last_tokens_only);
    ASSERT_EQ(k.blocks.size(), 1u);
    EXPECT_EQ(k.blocks[0].block, 2);
    EXPECT_EQ(k.blocks[0].attending_pairs, 6 + 3 * 2);
    EXPECT_DOUBLE_EQ(k.blocks[0].work, 9048);
    EXPECT_DOUBLE_EQ(k.work, 9048);
    EXPECT_EQ(k.keys, (std::vector<std::int64_t>{189, 190, 191}));
    EXPECT_EQ(k.query_tokens, (std::vector<std::int64_t>{189, 190, 191, 250, 251, 252, 253, 254, 255}));
    EXPECT_EQ(k.query_tokens, brute_attending(p, &sel, k.keys));
    // The tail's work is what its keys' attending rows cost, enumerated.
    double brute = 0;
    for (std::int64_t t : k.query_tokens)
        for (int h = 0; h < 2; ++h)
            if (selects(p, sel, t, h, 2)) brute += static_cast<double>(keys_of(p, sel, t, h, t)) * p.head_dim;
    EXPECT_DOUBLE_EQ(brute, 9048);
    // Under the later rows and one own row (6024 + 1024) no tail fits: the last tokens again,
    // rows 255..252 (head 0: 64 + 64..61 keys, head 1: 64..61) = 1536 + 1520 + 1504 + 1488.
    const KeySample last = sample_keys(p, &sel, 7000, 4, 4, 3);
    EXPECT_FALSE(last.block_tails);
    EXPECT_TRUE(last.last_tokens_only);
    EXPECT_EQ(last.keys, (std::vector<std::int64_t>{252, 253, 254, 255}));
    EXPECT_DOUBLE_EQ(last.work, 6048);
}

// Full causal attention (dense implementations): block work in closed form; when no block fits,
// the last token of each sequence, attended by its own row alone.
TEST(KeySampling, FullCausalFallsBackToLastTokens) {
    const Problem p = make_problem({100, 40}, 2, 2, 8, 16, 1, DType::f16);
    Problem dense = p;
    dense.topk = p.max_blocks();
    const Selection all = ref::full_selection(dense);
    const KeySample big = sample_keys(p, nullptr, 1e12, 2, 3, 1);
    for (const KeyBlock& b : big.blocks) {
        const auto [w, pairs] = brute_block(dense, all, b.seq, b.block);
        EXPECT_DOUBLE_EQ(b.work, w);
        EXPECT_EQ(b.attending_pairs, pairs);
    }
    EXPECT_EQ(big.query_tokens, brute_attending(p, nullptr, big.keys));
    // The last row of sequence 0 costs 2 heads x 100 keys x D 8 = 1600; of sequence 1, 640.
    const KeySample small = sample_keys(p, nullptr, 1700, 2, 3, 1);
    EXPECT_TRUE(small.last_tokens_only);
    EXPECT_TRUE(small.blocks.empty());
    EXPECT_EQ(small.keys, (std::vector<std::int64_t>{99}));
    EXPECT_EQ(small.query_tokens, (std::vector<std::int64_t>{99}));
    EXPECT_DOUBLE_EQ(small.work, 1600);
    // A budget under every block's (the cheapest, sequence 1's last, is 4672) takes the tails:
    // rows 99 and 98 of sequence 0 (1600 + 1584; row 97's 1568 would pass 4000), then the last
    // row of sequence 1, token 139 (640; the one before, 624, would not fit).
    const KeySample tails = sample_keys(p, nullptr, 4000, 2, 3, 1);
    EXPECT_TRUE(tails.last_tokens_only);
    EXPECT_EQ(tails.keys, (std::vector<std::int64_t>{98, 99, 139}));
    EXPECT_EQ(tails.query_tokens, (std::vector<std::int64_t>{98, 99, 139}));
    EXPECT_EQ(tails.query_tokens, brute_attending(p, nullptr, tails.keys));
    EXPECT_DOUBLE_EQ(tails.work, 1600 + 1584 + 640);
    const KeySample none = sample_keys(p, nullptr, 100, 2, 3, 1);
    EXPECT_TRUE(none.keys.empty());
    EXPECT_TRUE(none.query_tokens.empty());
}

}  // namespace
}  // namespace moba
