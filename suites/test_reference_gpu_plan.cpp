// The host side of the float64 GPU truth (reference/gpu/plan.hpp): its own selection check and
// the tiles with their unions of key blocks, against brute force. No GPU needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "reference/gpu/plan.hpp"
#include "test_util.hpp"

namespace moba {
namespace {

using ref::gpu::check_selection;
using ref::gpu::Plan;
using ref::gpu::plan_tiles;
using ref::gpu::Tile;
using test::expect_error;
using test::make_problem;

// A valid selection: the own block and up to topk - 1 random past blocks per (token, head).
Selection random_selection(const Problem& p, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Selection sel;
    sel.slots = p.sel_slots();
    sel.blocks.assign(p.sel_elems(), -1);
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    for (int s = 0; s < p.batch(); ++s) {
        for (std::int64_t t = cu[s]; t < cu[s + 1]; ++t) {
            const auto own = static_cast<std::int32_t>((t - cu[s]) / p.block);
            for (int h = 0; h < p.heads_q; ++h) {
                std::vector<std::int32_t> past(own);
                for (std::int32_t b = 0; b < own; ++b) past[b] = b;
                std::shuffle(past.begin(), past.end(), rng);
                past.resize(std::min<std::size_t>(past.size(), sel.slots - 1));
                past.push_back(own);
                std::sort(past.begin(), past.end());
                std::copy(past.begin(), past.end(),
                          sel.blocks.begin() + (t * p.heads_q + h) * sel.slots);
            }
        }
    }
    return sel;
}

// Every (sequence, head, row) in exactly one tile; each tile's union is what its rows attend.
void expect_plan_covers(const Problem& p, const Selection* sel, const Plan& plan,
                        std::int64_t workspace) {
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    std::map<std::tuple<int, int, std::int64_t>, int> seen;
    std::int64_t max_keys = 0;
    for (const Tile& t : plan.tiles) {
        const std::int64_t len = cu[t.seq + 1] - cu[t.seq];
        ASSERT_GE(t.rows, 1);
        ASSERT_LE(t.row0 + t.rows, len);
        for (std::int64_t r = t.row0; r < t.row0 + t.rows; ++r) ++seen[{t.seq, t.head, r}];
        std::set<std::int32_t> want;
        for (std::int64_t r = t.row0; r < t.row0 + t.rows; ++r) {
            if (!sel) {
                for (std::int32_t b = 0; b <= r / p.block; ++b) want.insert(b);
                continue;
            }
            const std::int32_t* row =
                sel->blocks.data() + ((cu[t.seq] + r) * p.heads_q + t.head) * sel->slots;
            for (int slot = 0; slot < sel->slots && row[slot] >= 0; ++slot) want.insert(row[slot]);
        }
        const std::vector<std::int32_t> got(plan.blocks.begin() + t.first_block,
                                            plan.blocks.begin() + t.first_block + t.blocks);
        EXPECT_EQ(got, std::vector<std::int32_t>(want.begin(), want.end()));
        std::int64_t keys = 0;
        for (std::int32_t b : want)
            keys += std::min<std::int64_t>(p.block, len - std::int64_t{b} * p.block);
        EXPECT_EQ(t.keys, keys);
        EXPECT_LE(t.keys * t.rows, workspace);
        EXPECT_LE(t.rows, plan.max_rows);
        EXPECT_LE(t.keys * t.rows, plan.max_elems);
        max_keys = std::max(max_keys, t.keys);
    }
    EXPECT_EQ(max_keys, plan.max_keys);
    EXPECT_EQ(static_cast<std::int64_t>(seen.size()), p.total_tokens() * p.heads_q);
    for (const auto& [where, count] : seen) EXPECT_EQ(count, 1);
}

TEST(ReferenceGpuPlan, FullCausalTilesAreWholeBlocksWithEveryEarlierBlock) {
    const Problem p = make_problem({1000, 1, 17, 513}, 4, 2, 64, 64, 1000);
    const Plan plan = plan_tiles(p, nullptr);
    expect_plan_covers(p, nullptr, plan, ref::gpu::kWorkspaceElems);
    // Block 64: tiles of 256 rows (4 blocks), clipped to the sequence.
    EXPECT_EQ(plan.tiles.front().rows, 256);
    EXPECT_EQ(plan.tiles.front().blocks, 4);
    EXPECT_EQ(plan.max_keys, 1000);  // the last tile of sequence 0 gathers all of it
}

TEST(ReferenceGpuPlan, SparseTilesGatherTheUnionOfTheirRowsBlocks) {
    for (int block : {16, 64, 300}) {
        const Problem p = make_problem({2049, 1, 700}, 4, 1, 32, block, 3);
        SCOPED_TRACE(block);
        const Selection sel = random_selection(p, 7 + block);
        check_selection(p, sel);
        const Plan plan = plan_tiles(p, &sel);
        expect_plan_covers(p, &sel, plan, ref::gpu::kWorkspaceElems);
        const int want_rows = block * ((ref::gpu::kMinTileRows + block - 1) / block);
        EXPECT_EQ(plan.max_rows, want_rows);
    }
}

TEST(ReferenceGpuPlan, TilesTooLargeForTheWorkspaceAreSplitIntoRuns) {
    const Problem p = make_problem({3000, 5}, 2, 1, 32, 512, 4);
    const Selection sel = random_selection(p, 3);
    for (std::int64_t workspace : {std::int64_t{3000}, std::int64_t{40000}, std::int64_t{200000}}) {
        SCOPED_TRACE(workspace);
        const Plan sparse = plan_tiles(p, &sel, workspace);
        expect_plan_covers(p, &sel, sparse, workspace);
        const Plan full = plan_tiles(p, nullptr, workspace);
        expect_plan_covers(p, nullptr, full, workspace);
        EXPECT_GT(full.tiles.size(), plan_tiles(p, nullptr).tiles.size());
    }
    // One row of the last block attends all 3000 keys: a smaller workspace cannot hold it.
    expect_error([&] { plan_tiles(p, nullptr, 2999); }, "3000 keys");
}

// moba check refuses a --reference gpu run up front on device_bytes_estimate: it must not be
// below what the truth then allocates for its actual plan (device_bytes), block lists aside.
TEST(ReferenceGpuPlan, DeviceBytesEstimateBoundsThePlansAllocation) {
    using ref::gpu::device_bytes;
    using ref::gpu::device_bytes_estimate;
    for (const std::int64_t workspace : {std::int64_t{1} << 12, std::int64_t{1} << 16, ref::gpu::kWorkspaceElems}) {
        const Problem sparse = make_problem({3000, 5, 1200}, 4, 2, 64, 128, 3);
        const Selection sel = random_selection(sparse, 3);
        const Plan sparse_plan = plan_tiles(sparse, &sel, workspace);
        const Problem full = make_problem({3000, 5, 1200}, 4, 2, 64, 128, 100);
        const Plan full_plan = plan_tiles(full, nullptr, workspace);
        for (bool backward : {false, true}) {
            const double blocks = 4.0 * static_cast<double>(sparse_plan.blocks.size());
            EXPECT_GE(device_bytes_estimate(sparse, true, backward, workspace) + blocks,
                      device_bytes(sparse, sparse_plan, true, backward))
                << "workspace " << workspace << " backward " << backward;
            EXPECT_GE(device_bytes_estimate(full, false, backward, workspace) + 4.0 * static_cast<double>(full_plan.blocks.size()),
                      device_bytes(full, full_plan, false, backward))
                << "workspace " << workspace << " backward " << backward;
        }
    }
    // q, k, v, dout, out, dq, dk, dv in double alone: 8M tokens x 64 heads x D 128 is 4 TiB.
    const Problem huge = make_problem({8 << 20}, 64, 64, 128, 4096, 12);
    EXPECT_GT(device_bytes_estimate(huge, true, true), 64.0 * static_cast<double>(huge.q_elems()));
}

TEST(ReferenceGpuPlan, MalformedSelectionsAreRefusedNamingTheEntry) {
    const Problem p = make_problem({100, 40}, 2, 2, 16, 16, 3);
    Selection good = random_selection(p, 1);
    // Token 99 of sequence 0, head 1: own block 6, two past blocks.
    std::int32_t* row99 = good.blocks.data() + (99 * p.heads_q + 1) * good.slots;
    row99[0] = 1;
    row99[1] = 3;
    row99[2] = 6;
    check_selection(p, good);
    auto with = [&](std::int64_t token, int head, int slot, std::int32_t value) {
        Selection s = good;
        s.blocks[(token * p.heads_q + head) * s.slots + slot] = value;
        return s;
    };
    expect_error([&] { check_selection(p, with(99, 1, 2, 5)); }, "own block is missing");
    expect_error([&] { check_selection(p, with(99, 1, 2, 7)); }, "after the own block");
    expect_error([&] { check_selection(p, with(99, 1, 1, 1)); }, "not strictly ascending");
    expect_error([&] { check_selection(p, with(99, 1, 0, -2)); }, "not a block index");
    // Token 100 is local position 0 of sequence 1: own block 0, then padding.
    expect_error([&] { check_selection(p, with(100, 0, 2, 0)); }, "after -1 padding");
    expect_error([&] { check_selection(p, with(100, 0, 0, -1)); }, "token 100, head 0, slot 0");
    expect_error([&] { check_selection(p, with(139, 0, 0, 1)); }, "token 139");
    Selection narrow = good;
    narrow.slots = 2;
    expect_error([&] { check_selection(p, narrow); }, "2 slots");
    Selection short_sel = good;
    short_sel.blocks.pop_back();
    expect_error([&] { check_selection(p, short_sel); }, "entries");
}

}  // namespace
}  // namespace moba
