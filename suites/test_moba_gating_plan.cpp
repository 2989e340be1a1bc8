// CPU checks of the tiled_mma gating's and block lists' host-side planning: the CTA tiling
// covers every (token, head) row exactly once, the selection kernel follows k, unsupported
// shapes are refused with a reason, the workspace sizes and bounds follow their formulas, and
// the host emulation of the block lists and work items matches a brute-force expectation. No
// GPU needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/problem.hpp"
#include "harness/scoped_env.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/gating.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/moba/row_stats.hpp"
#include "selection_fixture.hpp"

namespace moba::sparse {
namespace {

Problem make(std::vector<int> seqlens, int heads_q, int heads_kv, int head_dim, int block, int topk,
             DType dtype = DType::bf16) {
    Problem p;
    p.seqlens = std::move(seqlens);
    p.heads_q = heads_q;
    p.heads_kv = heads_kv;
    p.head_dim = head_dim;
    p.block = block;
    p.topk = topk;
    p.dtype = dtype;
    return p;
}

TEST(TiledGatingPlan, SelectionKernelFollowsTopk) {
    using Select = GatingPlan::Select;
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 1)).select, Select::top8);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 9)).select, Select::top8);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 10)).select, Select::top16);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 17)).select, Select::top16);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 18)).select, Select::top64);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 65)).select, Select::top64);
    EXPECT_EQ(plan_gating(make({4096}, 16, 16, 128, 128, 66)).select, Select::passes);
}

TEST(TiledGatingPlan, TilesCoverEveryRowOnce) {
    for (const int topk : {8, 12, 40}) {
        for (const int group : {1, 2, 3, 4, 8, 16, 100, 128, 129, 300}) {
            const Problem p = make({1000, 1, 4097}, group, 1, 64, 64, topk);
            const GatingPlan plan = plan_gating(p);
            SCOPED_TRACE("group " + std::to_string(group) + ", topk " + std::to_string(topk));
            EXPECT_EQ(plan.rows, topk <= 9 ? 384 : topk <= 17 ? 256 : 128);
            EXPECT_GE(plan.tile_heads, 1);
            EXPECT_GE(plan.tile_tokens, 1);
            EXPECT_LE(plan.tile_heads * plan.tile_tokens, plan.rows);
            // The head chunks of a group cover it, none of them empty.
            EXPECT_GE(plan.head_chunks * plan.tile_heads, group);
            EXPECT_LT((plan.head_chunks - 1) * plan.tile_heads, group);
            // Whole groups per CTA whenever they fit, so kbar tiles serve every head.
            if (group <= plan.rows) {
                EXPECT_EQ(plan.head_chunks, 1);
            }
            // Global tile indices: total / tile_tokens + B, enough for every sequence's tiles.
            EXPECT_EQ(plan.tiles, p.total_tokens() / plan.tile_tokens + p.batch());
            std::int64_t needed = 0;
            for (const int len : p.seqlens)
                needed += (len + plan.tile_tokens - 1) / plan.tile_tokens;
            EXPECT_GE(plan.tiles, needed);
        }
    }
}

TEST(TiledGatingPlan, RefusesWithAReason) {
    const Support fp32 = gating_can_implement(make({256}, 4, 4, 128, 64, 4, DType::f32));
    EXPECT_FALSE(fp32.ok);
    EXPECT_NE(fp32.reason.find("fp32"), std::string::npos) << fp32.reason;
    for (const int d : {32, 96, 256}) {
        const Support s = gating_can_implement(make({256}, 4, 4, d, 64, 4));
        EXPECT_FALSE(s.ok);
        EXPECT_NE(s.reason.find(std::to_string(d)), std::string::npos) << s.reason;
        EXPECT_EQ(gating_workspace_bytes(make({256}, 4, 4, d, 64, 4)), 0u);
    }
    EXPECT_FALSE(gating_can_implement(make({256}, 6, 4, 64, 64, 4)).ok);  // Hq % Hkv != 0
    EXPECT_TRUE(gating_can_implement(make({256}, 4, 4, 64, 64, 4, DType::f16)).ok);
    EXPECT_TRUE(gating_can_implement(make({1 << 20}, 32, 8, 128, 4096, 12)).ok);
    EXPECT_TRUE(gating_can_implement(make({1 << 19}, 16, 16, 128, 128, 8)).ok);
}

TEST(TiledGatingPlan, WorkspaceSizes) {
    // hi and lo terms, each [Hkv, total/Bs + B, D] in the input dtype, the second 256-aligned.
    const Problem p = make({1000, 24}, 8, 2, 64, 64, 4);
    const std::size_t term = static_cast<std::size_t>(1024 / 64 + 2) * 2 * 64 * 2;
    EXPECT_EQ(gating_workspace_bytes(p), 2 * ((term + 255) / 256 * 256));
}

TEST(TiledBlockLists, SizesAndBounds) {
    // sel_slots = min(4, 16) = 4: 3 waves; kbar slots 1024/64 + 2 = 18 per wave, 2 kv heads.
    const Problem p = make({1000, 24}, 8, 2, 64, 64, 4);
    EXPECT_EQ(max_list_entries(p), 1024 * 8 * 3);
    EXPECT_EQ(block_list_count(p), 3 * 18 * 2);
    EXPECT_EQ(max_block_items(p, 64), 1024 * 8 * 3 / 64 + 3 * 18 * 2);
    EXPECT_EQ(max_block_items(p, 7), 1024 * 8 * 3 / 7 + 3 * 18 * 2);
    EXPECT_EQ(max_block_items(p, 1), 1024 * 8 * 3 + 3 * 18 * 2);
    EXPECT_TRUE(block_lists_can_implement(p, 64).ok);
    // One slot per row (k = 1, or a single block): no wave, no list, no item.
    for (const Problem& none : {make({100}, 8, 2, 64, 64, 1), make({64, 30}, 8, 2, 64, 64, 8)}) {
        EXPECT_EQ(none.sel_slots(), 1);
        EXPECT_EQ(max_list_entries(none), 0);
        EXPECT_EQ(block_list_count(none), 0);
        EXPECT_EQ(max_block_items(none, 64), 0);
        EXPECT_TRUE(block_lists_can_implement(none, 64).ok);
        // No cub query without a wave, so this needs no GPU: offsets[0] and wave_items[0].
        EXPECT_GT(block_lists_workspace_bytes(none, 64), 0u);
    }
}

// The head passes' size (head_passes.hpp): the fewest passes whose accumulators (O and (m, l):
// D * 4 + 8 bytes per row) fit the budget, at least one kv head each, evened out; a bad budget is
// refused by value.
TEST(HeadPasses, FollowTheAccumulatorBudget) {
    const ScopedEnv restore(kAccumulatorBudgetEnv, nullptr);  // what the caller had, back at the end
    // Issue 17's memory setting: 1M tokens, 32 / 8 heads, D 128: 2^20 * 4 * 520 bytes (2.03 GiB)
    // per kv head, two of them over the 4 GiB default, so one kv head per pass.
    const Problem big = make({1 << 20}, 32, 8, 128, 4096, 12);
    const Problem small = make({3000, 700, 1}, 6, 3, 128, 128, 4);  // 3701 * 2 * 520 per kv head
    EXPECT_EQ(accumulator_budget_bytes(), std::size_t{4096} << 20);
    EXPECT_EQ(kv_heads_per_pass(big), 1);
    EXPECT_EQ(kv_heads_per_pass(small), 3);
    // The paper's 128K settings (2.03 GiB at 32 heads) stay one pass, MHA, GQA and MQA alike.
    for (const int kv : {32, 8, 1}) EXPECT_EQ(kv_heads_per_pass(make({1 << 17}, 32, kv, 128, 2048, 3)), kv) << kv;
    // 1M MHA: 520 MiB per kv head, 7 fit: 5 passes of at most 7 (7 + 7 + 7 + 7 + 4).
    EXPECT_EQ(kv_heads_per_pass(make({1 << 20}, 32, 32, 128, 4096, 12)), 7);
    // 512K MHA with 16 heads (FlashMoBA's setting): 4.06 GiB, 15 heads fit: 8 + 8, not 15 + 1.
    EXPECT_EQ(kv_heads_per_pass(make({1 << 19}, 16, 16, 128, 128, 8)), 8);
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "8", 1);  // 8 MiB / 3.85 MB: 2 kv heads
    EXPECT_EQ(kv_heads_per_pass(small), 2);
    std::vector<HeadPass> passes;
    for_each_head_pass(small, [&](const HeadPass& pass) { passes.push_back(pass); });
    ASSERT_EQ(passes.size(), 2u);
    EXPECT_EQ(passes[0].kv0, 0);
    EXPECT_EQ(passes[0].kv_heads, 2);
    EXPECT_EQ(passes[0].q_heads(), 4);
    EXPECT_EQ(passes[1].kv0, 2);
    EXPECT_EQ(passes[1].kv_heads, 1);
    EXPECT_EQ(passes[1].q0(), 4);
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "1", 1);
    EXPECT_EQ(kv_heads_per_pass(small), 1);
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "0", 1);  // one kv head per pass, however small
    EXPECT_EQ(kv_heads_per_pass(make({300, 45, 1}, 4, 2, 64, 32, 3)), 1);
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "1000000", 1);
    EXPECT_EQ(kv_heads_per_pass(big), 8);
    for (const char* bad : {"-4", "2GiB", "1.5", " 8", "99999999999999999999"}) {
        ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", bad, 1);
        try {
            (void)kv_heads_per_pass(small);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
        }
    }
}

// The MoBA backward's workspace (accumulator.hpp), both backends': the row statistics, then one
// head pass's fp32 dQ (none when the selection has no past block), then the lists, each region
// where the one before ends, so nothing overlaps and the sizes the backends ask for hold it.
TEST(BackwardWorkspace, CarvesStatisticsThenOnePassDqThenLists) {
    const ScopedEnv restore(kAccumulatorBudgetEnv, nullptr);  // what the caller had, back at the end
    ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", "8", 1);  // passes of 2 kv heads on `passes` below
    const Problem passes = make({3000, 700, 1}, 6, 3, 128, 128, 4);
    ASSERT_EQ(kv_heads_per_pass(passes), 2);
    ::unsetenv("MOBA_ACCUMULATOR_BUDGET_MIB");
    const Problem one_pass = make({1000, 17}, 8, 2, 64, 32, 3);
    const Problem no_past = make({1000, 17}, 8, 2, 64, 32, 1);  // k = 1: own blocks only
    for (const auto& [p, budget] : {std::pair{passes, "8"}, std::pair{one_pass, ""}, std::pair{no_past, ""}}) {
        if (*budget != '\0') ::setenv("MOBA_ACCUMULATOR_BUDGET_MIB", budget, 1);
        else ::unsetenv("MOBA_ACCUMULATOR_BUDGET_MIB");
        const std::size_t pass_rows =
            static_cast<std::size_t>(p.total_tokens()) * static_cast<std::size_t>(kv_heads_per_pass(p) * p.group());
        const std::size_t dq = dq_accumulator_bytes(p);
        if (p.sel_slots() == 1) {
            EXPECT_EQ(dq, 0u);
        } else {
            EXPECT_GE(dq, pass_rows * static_cast<std::size_t>(p.head_dim) * sizeof(float));
            EXPECT_LT(dq, pass_rows * static_cast<std::size_t>(p.head_dim) * sizeof(float) + 256);
        }
        // Only addresses are compared: the carve never touches the memory.
        const std::uintptr_t base = std::uintptr_t{1} << 40;
        const BackwardWorkspace ws = carve_backward_workspace(p, reinterpret_cast<void*>(base));
        const auto at = [](const void* q) { return reinterpret_cast<std::uintptr_t>(q); };
        EXPECT_EQ(at(ws.stats), base);
        if (dq == 0) EXPECT_EQ(ws.dq_acc, nullptr);
        else EXPECT_EQ(at(ws.dq_acc), base + row_stats_bytes(p));
        EXPECT_EQ(at(ws.lists), base + row_stats_bytes(p) + dq);
        EXPECT_GE(row_stats_bytes(p), static_cast<std::size_t>(p.total_tokens()) * p.heads_q * sizeof(float2));
    }
}

TEST(TiledBlockLists, RefusesWithAReason) {
    const Problem p = make({1000, 24}, 8, 2, 64, 64, 4);
    for (const int rows : {0, -3}) {
        const Support s = block_lists_can_implement(p, rows);
        EXPECT_FALSE(s.ok);
        EXPECT_NE(s.reason.find("tile_rows"), std::string::npos) << s.reason;
        EXPECT_EQ(block_lists_workspace_bytes(p, rows), 0u);
    }
    EXPECT_FALSE(block_lists_can_implement(make({256}, 6, 4, 64, 64, 4), 64).ok);  // Hq % Hkv
    // Entries: 2^20 tokens x 4096 heads x 63 waves.
    const Support entries = block_lists_can_implement(make({1 << 20}, 4096, 8, 64, 16, 64), 64);
    EXPECT_FALSE(entries.ok);
    EXPECT_NE(entries.reason.find("entries"), std::string::npos) << entries.reason;
    // Lists above entries need the per-sequence gap slot: 58982 sequences of 2 tokens, Bs = 1,
    // MHA with 16384 heads, one wave: 58982 * 2 * 16384 entries fit, 58982 * 3 * 16384 lists not.
    const Problem gaps = make(std::vector<int>(58982, 2), 16384, 16384, 64, 1, 2);
    EXPECT_LE(max_list_entries(gaps), INT32_MAX);
    const Support lists = block_lists_can_implement(gaps, 64);
    EXPECT_FALSE(lists.ok);
    EXPECT_NE(lists.reason.find("lists"), std::string::npos) << lists.reason;
    // Items: 2^21 x 16 x 63 entries fit, as do 63 x (2^17 + 1) x 16 lists, but their sum (one
    // item per entry and list) does not.
    const Problem many = make({1 << 21}, 16, 16, 64, 16, 64);
    EXPECT_LE(max_list_entries(many), INT32_MAX);
    EXPECT_TRUE(block_lists_can_implement(many, 64).ok);
    const Support items = block_lists_can_implement(many, 1);
    EXPECT_FALSE(items.ok);
    EXPECT_NE(items.reason.find("items"), std::string::npos) << items.reason;
    // Saturating sizes: 2^31 - 1 tokens x 2^30 heads x 2^31 - 1 waves overflow int64.
    const Problem huge = make({INT32_MAX}, 1 << 30, 1 << 30, 64, 1, INT32_MAX);
    EXPECT_EQ(max_list_entries(huge), INT64_MAX);
    EXPECT_EQ(block_list_count(huge), INT64_MAX);
    EXPECT_EQ(max_block_items(huge, 1), INT64_MAX);
    EXPECT_FALSE(block_lists_can_implement(huge, 64).ok);
    EXPECT_TRUE(block_lists_can_implement(make({1 << 20}, 32, 8, 128, 4096, 12), 64).ok);
}

// ---- host emulation against a brute-force expectation ---------------------------------------

// Brute force, written from the definition in block_lists.hpp without its helpers: for each
// (wave, sequence, block, kv head) in list order, scan every row for that entry.
struct Expected {
    std::vector<std::int32_t> offsets{0};
    std::vector<std::int32_t> rows;
    std::vector<std::int32_t> item_list;
    std::vector<std::int32_t> item_start;
    std::vector<std::int32_t> wave_items;
};

Expected brute_force(const Problem& p, const std::vector<std::int32_t>& sel, int tile_rows) {
    const int slots = p.sel_slots();
    const int group = p.heads_q / p.heads_kv;
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    const std::int64_t per_wave = p.total_tokens() / p.block + p.batch();  // kbar slots
    Expected e;
    for (int t = 0; t + 1 < slots; ++t) {
        e.wave_items.push_back(static_cast<std::int32_t>(e.item_list.size()));
        for (std::int64_t slot = 0; slot < per_wave; ++slot) {
            for (int hk = 0; hk < p.heads_kv; ++hk) {
                const auto list = static_cast<std::int32_t>(e.offsets.size() - 1);
                EXPECT_EQ(list, (t * per_wave + slot) * p.heads_kv + hk);
                std::vector<std::int32_t> rows;
                for (int b = 0; b < p.batch(); ++b) {
                    const std::int64_t j = slot - (cu[b] / p.block + b);  // block j of sequence b
                    if (j < 0) continue;
                    for (std::int64_t token = cu[b]; token < cu[b + 1]; ++token) {
                        if (j >= (token - cu[b]) / p.block) continue;  // not a past block
                        for (int h = hk * group; h < (hk + 1) * group; ++h) {
                            if (sel[static_cast<std::size_t>((token * p.heads_q + h) * slots +
                                                             t)] == j) {
                                rows.push_back(
                                    static_cast<std::int32_t>(token * group + h - hk * group));
                            }
                        }
                    }
                }
                std::sort(rows.begin(), rows.end());
                for (std::size_t c = 0; c < rows.size(); c += static_cast<std::size_t>(tile_rows)) {
                    e.item_list.push_back(list);
                    e.item_start.push_back(static_cast<std::int32_t>(c));
                }
                e.rows.insert(e.rows.end(), rows.begin(), rows.end());
                e.offsets.push_back(static_cast<std::int32_t>(e.rows.size()));
            }
        }
    }
    e.wave_items.push_back(static_cast<std::int32_t>(e.item_list.size()));
    return e;
}

struct ListCase {
    std::vector<int> seqlens;
    int heads_q;
    int heads_kv;
    int block;
    int topk;
};

TEST(TiledBlockLists, HostEmulationMatchesBruteForce) {
    const std::vector<ListCase> cases = {
        {{1}, 2, 1, 16, 4},           // one token: one slot, no wave
        {{113}, 4, 4, 16, 3},         // MHA
        {{200, 1, 47}, 6, 2, 16, 4},  // GQA, varlen with a 1-token sequence
        {{257, 64}, 3, 1, 32, 64},    // MQA, k above the block count
        {{300}, 8, 4, 8, 1},          // k = 1: no wave
        {{160, 161}, 4, 2, 16, 2},    // one wave
    };
    std::mt19937 rng(7);
    for (const ListCase& c : cases) {
        const Problem p = make(c.seqlens, c.heads_q, c.heads_kv, 64, c.block, c.topk);
        for (const int tile_rows : {1, 3, 64}) {
            for (const bool full : {false, true}) {
                for (const bool noise : {false, true}) {
                    SCOPED_TRACE(p.flags() + " tile_rows " + std::to_string(tile_rows) +
                                 (full ? " full" : " random") + (noise ? " noise" : ""));
                    const std::vector<std::int32_t> sel = test::make_sel(p, rng, full, noise);
                    const HostBlockLists got = build_block_lists_host(p, sel, tile_rows);
                    const Expected want = brute_force(p, sel, tile_rows);
                    EXPECT_EQ(got.waves, p.sel_slots() - 1);
                    EXPECT_EQ(got.lists_per_wave,
                              (p.total_tokens() / p.block + p.batch()) * p.heads_kv);
                    EXPECT_EQ(got.lists, got.waves * got.lists_per_wave);
                    EXPECT_EQ(got.lists, block_list_count(p));
                    EXPECT_EQ(got.rows.empty(), got.waves == 0);  // never vacuous
                    EXPECT_EQ(got.offsets, want.offsets);
                    EXPECT_EQ(got.rows, want.rows);
                    EXPECT_EQ(got.item_list, want.item_list);
                    EXPECT_EQ(got.item_start, want.item_start);
                    EXPECT_EQ(got.wave_items, want.wave_items);
                    EXPECT_LE(static_cast<std::int64_t>(got.rows.size()), max_list_entries(p));
                    EXPECT_LE(static_cast<std::int64_t>(got.item_list.size()),
                              max_block_items(p, tile_rows));
                }
            }
        }
    }
}

// The properties the forward relies on, checked on the emulation's output: each wave's items
// cover its entries exactly once in chunks of at most tile_rows, and no (row, kv head) appears
// twice within a wave, so the wave's accumulator updates never collide.
TEST(TiledBlockLists, WavesNeverRepeatARow) {
    const Problem p = make({700, 90, 333}, 12, 4, 64, 32, 6);
    std::mt19937 rng(11);
    for (const bool full : {false, true}) {
        const std::vector<std::int32_t> sel = test::make_sel(p, rng, full, true);
        const int tile_rows = 5;
        const HostBlockLists got = build_block_lists_host(p, sel, tile_rows);
        ASSERT_EQ(got.waves, 5);
        ASSERT_EQ(got.wave_items.size(), 6u);
        std::int64_t listed = 0;
        for (int t = 0; t < got.waves; ++t) {
            std::set<std::pair<std::int32_t, std::int32_t>> seen;  // (row value, kv head)
            std::int32_t prev_list = -1;
            std::int32_t prev_end = 0;
            for (std::int32_t i = got.wave_items[static_cast<std::size_t>(t)];
                 i < got.wave_items[static_cast<std::size_t>(t) + 1]; ++i) {
                const std::int32_t list = got.item_list[static_cast<std::size_t>(i)];
                ASSERT_GE(list, t * got.lists_per_wave);
                ASSERT_LT(list, (t + 1) * got.lists_per_wave);
                const std::int32_t begin = got.offsets[static_cast<std::size_t>(list)];
                const std::int32_t size = got.offsets[static_cast<std::size_t>(list) + 1] - begin;
                const std::int32_t start = got.item_start[static_cast<std::size_t>(i)];
                // Items follow each other: the next chunk of the same list, or a new list at 0.
                EXPECT_EQ(start, list == prev_list ? prev_end : 0);
                EXPECT_TRUE(list >= prev_list);
                ASSERT_LT(start, size);
                const std::int32_t end = std::min(start + tile_rows, size);
                for (std::int32_t e = begin + start; e < begin + end; ++e) {
                    const auto hk = static_cast<std::int32_t>(list % p.heads_kv);
                    EXPECT_TRUE(seen.insert({got.rows[static_cast<std::size_t>(e)], hk}).second)
                        << "row " << got.rows[static_cast<std::size_t>(e)] << " twice in wave "
                        << t;
                }
                listed += end - start;
                if (end == size) {
                    prev_list = list;
                    prev_end = -1;  // the list is done: another item of it would be an error
                } else {
                    prev_list = list;
                    prev_end = end;
                }
            }
        }
        EXPECT_EQ(listed, static_cast<std::int64_t>(got.rows.size()));
        EXPECT_GT(listed, 0);
    }
}

}  // namespace
}  // namespace moba::sparse
