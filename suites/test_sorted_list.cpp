// The fused gating's register list (kernels/moba/sorted_list.cuh), on the CPU: for every list
// length the kernels use (k - 1 = 1..8) the list's blocks, threshold and fullness after a stream
// of candidates in ascending block order (the kernels' order) must be those of a sort of the whole
// stream by the candidate order (higher score first, the lower block on equal scores, SEMANTICS.md
// §2), whether or not they were filtered by the threshold first, as the kernel does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/moba/sorted_list.cuh"

namespace moba::sparse {
namespace {

struct Candidate {
    float score;
    int block;
};

// The expected list: the n best candidates by a full sort.
std::vector<Candidate> best_by_sort(std::vector<Candidate> all, int n) {
    std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
        return ranks_before(a.score, a.block, b.score, b.block);
    });
    all.resize(std::min<std::size_t>(all.size(), static_cast<std::size_t>(n)));
    return all;
}

// Blocks 0..count-1 in ascending order (the kernel's) with scores drawn from `levels` values (few
// levels: many equal scores), a few of them +inf.
std::vector<Candidate> stream(std::mt19937& rng, int count, int levels) {
    std::vector<Candidate> out;
    std::uniform_int_distribution<int> level(0, levels - 1);
    std::uniform_int_distribution<int> rare(0, 40);
    for (int b = 0; b < count; ++b) {
        const float score =
            rare(rng) == 0 ? INFINITY : 0.25f * static_cast<float>(level(rng)) - 3.0f;
        out.push_back({score, b});
    }
    return out;
}

void expect_list(const SortedList8& list, const std::vector<Candidate>& expected, int n,
                 const char* how) {
    int blocks[SortedList8::kEntries] = {};
    const int held = list.copy_blocks(blocks);
    ASSERT_EQ(held, static_cast<int>(expected.size())) << how << ", n " << n;
    for (int j = 0; j < held; ++j) {
        EXPECT_EQ(blocks[j], expected[j].block) << how << ", n " << n << ", rank " << j;
    }
    const bool full = static_cast<int>(expected.size()) == n;
    EXPECT_EQ(list.full(), full) << how << ", n " << n;
    if (full) {
        EXPECT_EQ(list.threshold(), expected.back().score) << how << ", n " << n;
    } else {
        EXPECT_EQ(list.threshold(), -INFINITY) << how << ", n " << n;
    }
}

TEST(SortedList8, KeepsTheBestOfAStreamLikeASort) {
    std::mt19937 rng(7);
    for (int n = 1; n <= SortedList8::kEntries; ++n) {
        for (int trial = 0; trial < 300; ++trial) {
            const int count = std::uniform_int_distribution<int>(0, 60)(rng);
            const int levels = trial % 3 == 0 ? 3 : 200;
            const std::vector<Candidate> all = stream(rng, count, levels);
            const std::vector<Candidate> expected = best_by_sort(all, n);

            SortedList8 every;  // every candidate inserted
            every.clear(n);
            for (const Candidate& c : all) every.insert_ascending(c.score, c.block);
            expect_list(every, expected, n, "all");

            // As the kernel: only candidates above the current threshold reach the list. A score
            // equal to the threshold ranks after the entry holding it (a lower block), so the
            // filter loses nothing.
            SortedList8 filtered;
            filtered.clear(n);
            for (const Candidate& c : all) {
                if (c.score > filtered.threshold()) filtered.insert_ascending(c.score, c.block);
            }
            expect_list(filtered, expected, n, "filtered");
        }
    }
}

TEST(SortedList8, EqualScoresKeepTheLowestBlocks) {
    for (int n = 1; n <= SortedList8::kEntries; ++n) {
        SortedList8 list;
        list.clear(n);
        list.insert_ascending(0.5f, 0);  // displaced once n equal better scores arrive
        for (int b = 1; b <= 20; ++b) list.insert_ascending(1.5f, b);
        int blocks[SortedList8::kEntries] = {};
        ASSERT_EQ(list.copy_blocks(blocks), n);
        for (int j = 0; j < n; ++j) EXPECT_EQ(blocks[j], j + 1) << "n " << n;
        EXPECT_EQ(list.threshold(), 1.5f);
    }
}

TEST(SortedList8, PadsNeverLeaveAndNothingPassesAnEmptyLength) {
    SortedList8 none;
    none.clear(0);  // k = 1: only the own block, every entry a pad
    none.insert_ascending(INFINITY, 3);
    none.insert_ascending(2.0f, 4);
    int blocks[SortedList8::kEntries] = {};
    EXPECT_EQ(none.copy_blocks(blocks), 0);
    EXPECT_FALSE(2.0f > none.threshold());  // the threshold is +inf: no score passes

    SortedList8 one;
    one.clear(1);
    one.insert_ascending(INFINITY, 2);  // a real +inf score still ranks after the pads
    one.insert_ascending(INFINITY, 9);  // and before no equal entry of a lower block
    ASSERT_EQ(one.copy_blocks(blocks), 1);
    EXPECT_EQ(blocks[0], 2);
    EXPECT_TRUE(one.full());
}

}  // namespace
}  // namespace moba::sparse
