// The context-parallel plan (harness/cp_plan.hpp): zig-zag shards balance causal work exactly,
// every MoBA pair and every remote block a rank's queries select is accounted once, and a shape
// that does not shard is refused with the value named.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.hpp"

#include "harness/cp_plan.hpp"
#include "harness/flops.hpp"
#include "harness/inputs.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

using test::make_problem;

TEST(CpPlan, RefusalsNameTheValue) {
    const Problem batch = make_problem({256, 256}, 2, 2, 16, 16, 2, DType::bf16);
    EXPECT_NE(cp_can_shard(batch, 2).reason.find("not a batch of 2"), std::string::npos);
    const Problem odd = make_problem({1000}, 2, 2, 16, 16, 2, DType::bf16);
    const Support s = cp_can_shard(odd, 4);
    EXPECT_FALSE(s.ok);
    EXPECT_NE(s.reason.find("length 1000 does not split into 8 chunks"), std::string::npos) << s.reason;
    EXPECT_NE(cp_can_shard(make_problem({512}, 2, 2, 16, 16, 2, DType::bf16), 0).reason.find("ranks 0"),
              std::string::npos);
    EXPECT_THROW(zigzag_plan(odd, 4, nullptr), std::invalid_argument);
    // 8 chunks of 64 tokens, whole blocks of 32: fits; blocks of 128 would straddle chunks.
    EXPECT_TRUE(cp_can_shard(make_problem({512}, 2, 2, 16, 32, 2, DType::bf16), 4).ok);
    EXPECT_FALSE(cp_can_shard(make_problem({512}, 2, 2, 16, 128, 2, DType::bf16), 4).ok);
}

// Rank r holds chunks r and 2R-1-r: C^2 (2R - 1) + C (C + 1) causal pairs each, whatever r.
TEST(CpPlan, ZigZagBalancesCausalWorkExactly) {
    const Problem p = make_problem({1024}, 4, 2, 16, 32, 3, DType::bf16);
    for (int ranks : {1, 2, 4, 8}) {
        const CpPlan plan = zigzag_plan(p, ranks, nullptr);
        ASSERT_EQ(static_cast<int>(plan.per_rank.size()), ranks);
        EXPECT_EQ(plan.chunk, 1024 / (2 * ranks));
        EXPECT_DOUBLE_EQ(plan.dense_imbalance, 1.0) << ranks;
        double pairs = 0;
        std::int64_t tokens = 0;
        for (const CpRank& r : plan.per_rank) {
            pairs += r.dense_pairs;
            tokens += r.tokens;
            EXPECT_EQ(r.chunk_begin[0], r.rank * plan.chunk);
            EXPECT_EQ(r.chunk_end[1], (2 * ranks - r.rank) * plan.chunk);
            EXPECT_EQ(r.means_bytes_received, (32 - 2 * plan.chunk / 32) * 2 * 16 * 4);
        }
        EXPECT_DOUBLE_EQ(pairs, dense_pairs(p));
        EXPECT_EQ(tokens, 1024);
    }
}

// Every row selects block 0 (a sink) and its own: rank 0 holds block 0, every other rank receives
// it once per kv head (both query heads of a group chose it), K and V of 32 keys x D 16 in bf16.
TEST(CpPlan, ASinkIsReceivedOncePerKvHead) {
    const Problem p = make_problem({512}, 4, 2, 16, 32, 2, DType::bf16);
    Selection sel;
    sel.slots = p.sel_slots();
    for (std::int64_t t = 0; t < 512; ++t)
        for (int h = 0; h < 4; ++h) {
            const std::int32_t own = static_cast<std::int32_t>(t / 32);
            if (own == 0) sel.blocks.insert(sel.blocks.end(), {0, -1});
            else sel.blocks.insert(sel.blocks.end(), {0, own});
        }
    const CpPlan plan = zigzag_plan(p, 4, &sel);
    for (const CpRank& r : plan.per_rank) {
        EXPECT_EQ(r.blocks_received, r.rank == 0 ? 0 : 2) << r.rank;
        EXPECT_EQ(r.kv_bytes_received, r.blocks_received * 2 * 32 * 16 * 2);
    }
}

// With float64 gating's selection: the ranks' MoBA pairs add up to the problem's, and the blocks a
// rank receives are exactly the remote (block, kv head) pairs its rows selected.
TEST(CpPlan, MobaPairsAndReceivedBlocksFromASelection) {
    const Problem p = make_problem({768}, 4, 2, 16, 32, 3, DType::bf16);
    const Selection sel = ref::gating(p, make_inputs(p, 7)).selection;
    const CpPlan plan = zigzag_plan(p, 3, &sel);
    double pairs = 0;
    for (const CpRank& r : plan.per_rank) {
        pairs += r.moba_pairs;
        std::vector<std::vector<char>> remote(24, std::vector<char>(2, 0));
        for (int i = 0; i < 2; ++i)
            for (std::int64_t t = r.chunk_begin[i]; t < r.chunk_end[i]; ++t)
                for (int h = 0; h < 4; ++h)
                    for (int slot = 0; slot < sel.slots; ++slot) {
                        const std::int32_t b = sel.blocks[(t * 4 + h) * sel.slots + slot];
                        if (b < 0) continue;
                        const std::int64_t first = std::int64_t{b} * 32;
                        const bool local = (first >= r.chunk_begin[0] && first < r.chunk_end[0]) ||
                                           (first >= r.chunk_begin[1] && first < r.chunk_end[1]);
                        if (!local) remote[b][h / 2] = 1;
                    }
        std::int64_t want = 0;
        for (const auto& kv : remote) want += std::accumulate(kv.begin(), kv.end(), std::int64_t{0});
        EXPECT_EQ(r.blocks_received, want) << r.rank;
        EXPECT_GT(r.moba_memory_bytes, 0u);
    }
    EXPECT_DOUBLE_EQ(pairs, moba_pairs(p));
    EXPECT_GE(plan.moba_imbalance, 1.0);
    Selection short_sel = sel;
    short_sel.blocks.pop_back();
    EXPECT_THROW(zigzag_plan(p, 3, &short_sel), std::invalid_argument);
}

// The memory estimate counts one head pass's accumulator and block lists
// (kernels/moba/head_passes.hpp), not [tokens, Hq]: at 1M tokens, 32 / 8 heads, D 128, bf16, block
// 4096, k 12 on one GPU, 40 GiB of tensors, 0.375 GiB of row statistics and lse, one kv group's
// accumulator 2.03 GiB, its lists 0.34 GiB and the 1.5 GiB selection; a budget that holds every
// head puts the whole 16.1 GiB accumulator back.
TEST(CpPlan, MemoryEstimateFollowsTheHeadPasses) {
    Problem p;
    p.seqlens = {1 << 20};
    p.heads_q = 32;
    p.heads_kv = 8;
    p.head_dim = 128;
    p.block = 4096;
    p.topk = 12;
    const char* saved = std::getenv("MOBA_ACCUMULATOR_BUDGET_MIB");
    const std::string old = saved != nullptr ? saved : "";
    ::unsetenv("MOBA_ACCUMULATOR_BUDGET_MIB");
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const double passes = static_cast<double>(zigzag_plan(p, 1, nullptr).per_rank.at(0).moba_memory_bytes) / gib;
    const double tensors = 40.0 + 0.375 + 1.5;
    EXPECT_NEAR(passes, tensors + 2.03125 + 0.34375, 1e-3);
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "1000000", 1);
    const double one_pass = static_cast<double>(zigzag_plan(p, 1, nullptr).per_rank.at(0).moba_memory_bytes) / gib;
    EXPECT_NEAR(one_pass, tensors + 16.25 + 2.75, 1e-3);
    if (saved != nullptr) ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", old.c_str(), 1);
    else ::unsetenv("MOBA_ACCUMULATOR_BUDGET_MIB");
}

}  // namespace
}  // namespace moba
