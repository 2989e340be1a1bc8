// The decode IO accounting (harness/decode_io.hpp, SEMANTICS.md §9.1) on hand-built selections:
// union counting per kv group, a partial own block's bytes, the vote and its ties, recall; the
// ordering MHA <= GQA <= MQA for one selection grouped three ways and on drawn inputs; and the
// study's inputs, q at the new tokens and k, bitwise those of make_inputs for every family.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <vector>

#include "harness/decode_io.hpp"
#include "harness/decode_study.hpp"
#include "harness/inputs.hpp"
#include "test_util.hpp"

namespace moba {
namespace {

using test::expect_error;

constexpr int kDim = 8, kBlock = 16;
constexpr std::int64_t kTokenBytes = kDim * 2 * 4;  // K and V of one kv head, fp32

// Request 0: 102 cached tokens, blocks 0..5 full and block 6 partial (6 tokens), one new token
// at position 101 (own block 6). Request 1: 5 tokens, only its own block 0.
ref::DecodeBatch two_requests(int heads_q, int heads_kv) {
    ref::DecodeBatch b;
    b.cache.seqlens = {102, 5};
    b.cache.heads_q = heads_q;
    b.cache.heads_kv = heads_kv;
    b.cache.head_dim = kDim;
    b.cache.block = kBlock;
    b.cache.topk = 3;
    b.cache.dtype = DType::f32;
    b.q_lens = {1, 1};
    return b;
}

// Rows of request 0 (one per head), then request 1's rows (own block 0 only), slots 3.
Selection selection_of(const std::vector<std::vector<int>>& request0_heads) {
    Selection s;
    s.slots = 3;
    for (const auto& blocks : request0_heads) {
        std::vector<int> row = blocks;
        row.resize(3, -1);
        s.blocks.insert(s.blocks.end(), row.begin(), row.end());
    }
    for (std::size_t h = 0; h < request0_heads.size(); ++h)
        s.blocks.insert(s.blocks.end(), {0, -1, -1});
    return s;
}

// A score that prefers high block indices, so the vote's count, not the score, must decide.
double prefer_late(std::int64_t, int, int block) { return 100.0 * block; }

TEST(DecodeIo, UnionPerGroupPartialOwnBlockVoteAndRecall) {
    const ref::DecodeBatch b = two_requests(4, 1);  // MQA: one group of 4 heads
    const Selection sel = selection_of({{0, 1, 6}, {1, 2, 6}, {1, 3, 6}, {0, 1, 6}});
    const DecodeIo io = decode_io(b, sel, prefer_late);
    ASSERT_EQ(io.groups.size(), 2u);
    const GroupIo& g = io.groups[0];
    EXPECT_EQ(g.distinct_blocks, 5);                              // {0, 1, 2, 3, 6}
    EXPECT_EQ(g.measured_bytes, (4 * kBlock + 6) * kTokenBytes);  // the own block holds 6 tokens
    EXPECT_EQ(g.ideal_bytes, (2 * kBlock + 6) * kTokenBytes);
    EXPECT_EQ(g.dense_bytes, 102 * kTokenBytes);
    // Block 1 has 4 votes, block 0 two; 2 and 3 one each though they score higher.
    EXPECT_EQ(g.vote_blocks, 3);
    EXPECT_EQ(g.vote_bytes, (2 * kBlock + 6) * kTokenBytes);
    EXPECT_EQ(g.head_rows, 4);
    EXPECT_EQ(g.union_extra_blocks, 4 * 2);  // each head: 5 in the union, 3 of its own
    EXPECT_DOUBLE_EQ(g.vote_recall_sum, 1.0 + 0.5 + 0.5 + 1.0);

    const GroupIo& short_cache = io.groups[1];
    EXPECT_EQ(short_cache.distinct_blocks, 1);
    EXPECT_EQ(short_cache.measured_bytes, 5 * kTokenBytes);
    EXPECT_EQ(short_cache.dense_bytes, 5 * kTokenBytes);
    EXPECT_DOUBLE_EQ(short_cache.vote_recall_sum, 4.0);  // no past blocks: nothing to lose

    EXPECT_EQ(io.measured_bytes, (70 + 5) * kTokenBytes);
    EXPECT_EQ(io.dense_bytes, (102 + 5) * kTokenBytes);
    EXPECT_DOUBLE_EQ(io.measured_ratio(), 75.0 / 107.0);
    EXPECT_DOUBLE_EQ(io.ideal_ratio(), 43.0 / 107.0);
    EXPECT_DOUBLE_EQ(io.distinct_blocks_mean(), 3.0);
    EXPECT_DOUBLE_EQ(io.union_extra_blocks_per_head(), 8.0 / 8.0);
    EXPECT_DOUBLE_EQ(io.vote_recall(), (3.0 + 4.0) / 8.0);
}

TEST(DecodeIo, VoteTiesGoToTheLargerSummedScoreThenTheLowerBlock) {
    const ref::DecodeBatch b = two_requests(4, 1);
    // Every past block has two votes. Summed scores: block 3 highest, blocks 1 and 2 equal.
    const Selection sel = selection_of({{0, 1, 6}, {2, 3, 6}, {0, 2, 6}, {1, 3, 6}});
    const std::map<int, double> score = {{0, 1.0}, {1, 2.0}, {2, 2.0}, {3, 5.0}};
    const DecodeIo io =
        decode_io(b, sel, [&](std::int64_t, int, int block) { return score.at(block); });
    // Vote {1, 3, 6}: recall 1/2, 1/2, 0, 1 (a higher-index tie rule would give {2, 3, 6};
    // ignoring the scores, {0, 1, 6}).
    EXPECT_DOUBLE_EQ(io.groups[0].vote_recall_sum, 2.0);
    EXPECT_EQ(io.groups[0].vote_bytes, (2 * kBlock + 6) * kTokenBytes);
    const Selection keep_13 = selection_of({{1, 3, 6}, {1, 3, 6}, {1, 3, 6}, {1, 3, 6}});
    EXPECT_DOUBLE_EQ(decode_io(b, keep_13, prefer_late).groups[0].vote_recall_sum, 4.0);
}

// One selection, grouped as MHA (4 groups of 1), GQA (2 of 2) and MQA (1 of 4): the measured
// bytes can only grow with the group; MHA reads exactly the ideal.
TEST(DecodeIo, LargerGroupsReadAtLeastAsMuch) {
    const Selection sel = selection_of({{0, 1, 6}, {1, 2, 6}, {1, 3, 6}, {4, 5, 6}});
    const DecodeIo mha = decode_io(two_requests(4, 4), sel, prefer_late);
    const DecodeIo gqa = decode_io(two_requests(4, 2), sel, prefer_late);
    const DecodeIo mqa = decode_io(two_requests(4, 1), sel, prefer_late);
    EXPECT_EQ(mha.measured_bytes, mha.ideal_bytes);
    EXPECT_DOUBLE_EQ(mha.union_extra_blocks_per_head(), 0.0);
    EXPECT_DOUBLE_EQ(mha.vote_recall(), 1.0);
    EXPECT_LT(mha.measured_ratio(), gqa.measured_ratio());
    EXPECT_LT(gqa.measured_ratio(), mqa.measured_ratio());
    EXPECT_DOUBLE_EQ(mha.measured_ratio(), 172.0 / 428.0);  // 4 x (2 full blocks + 6), 4 x 5
    EXPECT_DOUBLE_EQ(gqa.measured_ratio(), 134.0 / 214.0);  // {0,1,2,6}, {1,3,4,5,6}, 2 x 5
    EXPECT_DOUBLE_EQ(mqa.measured_ratio(), 1.0);            // every block of both caches
}

TEST(DecodeIo, MalformedSelectionsAreRefusedNamingTheRow) {
    const ref::DecodeBatch b = two_requests(4, 1);
    expect_error(
        [&] {
            decode_io(b, selection_of({{0, 1, 6}, {1, 2, 5}, {1, 3, 6}, {0, 1, 6}}), prefer_late);
        },
        "selection row 0, head 1 lacks its own block 6");
    expect_error(
        [&] {
            decode_io(b, selection_of({{0, 1, 6}, {2, 1, 6}, {1, 3, 6}, {0, 1, 6}}), prefer_late);
        },
        "selection row 0, head 1: block 1 is not ascending");
    Selection short_sel = selection_of({{0, 1, 6}, {1, 2, 6}, {1, 3, 6}, {0, 1, 6}});
    short_sel.blocks.pop_back();
    expect_error([&] { decode_io(b, short_sel, prefer_late); }, "selection has 23 entries");
}

// Drawn inputs, float64 gating: with 8 query heads each taking 2 of 31 past blocks, the heads of
// an MQA group spread over more blocks than one head reads.
TEST(DecodeIo, MqaReadsMoreThanMhaOnRandomInputs) {
    DecodeStudyPoint p;
    p.heads_q = 8;
    p.cache_len = 1000;
    p.batch = 2;
    p.block = 32;
    p.topk = 3;
    p.head_dim = 32;
    p.seed = 7;
    p.heads_kv = 8;
    const DecodeIo mha = run_decode_study_point(p);
    p.heads_kv = 1;
    const DecodeIo mqa = run_decode_study_point(p);
    EXPECT_DOUBLE_EQ(mha.measured_ratio(), mha.ideal_ratio());
    EXPECT_DOUBLE_EQ(mqa.ideal_ratio(),
                     mha.ideal_ratio());  // equal caches: k blocks of the same sizes
    EXPECT_GE(mqa.measured_ratio(), mha.measured_ratio());
    EXPECT_GT(mqa.distinct_blocks_mean(), 3.0);
    EXPECT_DOUBLE_EQ(mha.distinct_blocks_mean(), 3.0);
    EXPECT_LT(mqa.vote_recall(), 1.0);
}

TEST(DecodeStudyInputs, QueryRowsAndKeysAreThoseOfMakeInputsForEveryFamily) {
    const Problem p = test::make_problem({130, 70}, 4, 2, 16, 32, 3, DType::bf16);
    const std::vector<std::int64_t> tokens = {129, 0, 199, 131};
    const std::size_t row = 4 * 16;
    for (InputFamily family : all_input_families()) {
        const HostInputs all = make_inputs(p, 5, family);
        const QueryRowsAndKeys some = make_query_rows_and_keys(p, 5, family, tokens);
        EXPECT_EQ(some.k, all.k) << to_string(family);
        ASSERT_EQ(some.q_rows.size(), tokens.size() * row);
        for (std::size_t r = 0; r < tokens.size(); ++r)
            for (std::size_t i = 0; i < row; ++i)
                ASSERT_EQ(some.q_rows[r * row + i],
                          all.q[static_cast<std::size_t>(tokens[r]) * row + i])
                    << to_string(family) << " token " << tokens[r] << " element " << i;
    }
    expect_error([&] { make_query_rows_and_keys(p, 5, InputFamily::normal, {200}); },
                 "query token 200 is outside [0, 200)");
}

}  // namespace
}  // namespace moba
