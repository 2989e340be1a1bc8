// The checks must catch realistic kernel bugs: wrong outputs planted on purpose into an
// otherwise correct result (the same-precision baseline) are judged by the same functions
// `moba check` uses (harness/compare.hpp, SEMANTICS.md §5), on the CPU. Each plant is sized so
// the whole-tensor max rule alone would let it through; the test asserts that too, so a
// plant that grows large enough to be caught anyway cannot make the test pass vacuously.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "harness/compare.hpp"
#include "harness/inputs.hpp"
#include "harness/suite.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

struct Case {
    Problem p;
    HostInputs in;
    ref::GatingResult gate;
    ref::Forward truth;
    ForwardOutput base;
};

Case make_case(InputFamily family) {
    Case c;
    c.p.seqlens = {256, 77, 1};
    c.p.heads_q = 4;
    c.p.heads_kv = 2;
    c.p.head_dim = 64;
    c.p.block = 32;
    c.p.topk = 3;
    c.p.dtype = DType::bf16;
    c.in = make_inputs(c.p, 11, family);
    c.gate = ref::gating(c.p, c.in);
    c.truth = ref::attention_forward(c.p, c.in, c.gate.selection);
    c.base = ref::baseline_forward(c.p, c.in, c.gate.selection);
    return c;
}

// rows: the region rule on (Rows{D, Hq}) or off (Rows{}).
TensorCheck check_out(const Case& c, const std::vector<float>& got, Rows rows) {
    return compare_tensor("out", got, c.truth.out, c.base.out, kForwardFactor,
                          tensor_atol(c.p.dtype), rows);
}

Rows regions(const Case& c) {
    return {static_cast<std::size_t>(c.p.head_dim), static_cast<std::size_t>(c.p.heads_q)};
}

TEST(Planted, TheUnplantedBaselinePasses) {
    for (InputFamily family : all_input_families()) {
        const Case c = make_case(family);
        const TensorCheck t = check_out(c, c.base.out, regions(c));
        EXPECT_EQ(t.outcome, Outcome::passed) << to_string(family) << ": " << t.reason;
    }
}

// One (token, head) row off by a little: a row of the region (head x 64 tokens) with the smallest
// baseline error gets an error above that region's bound but below the whole tensor's.
TEST(Planted, OneWrongRowIsCaught) {
    const Case c = make_case(InputFamily::normal);
    const std::size_t d = static_cast<std::size_t>(c.p.head_dim);
    const std::size_t hq = static_cast<std::size_t>(c.p.heads_q);
    const TensorCheck clean = check_out(c, c.base.out, Rows{});
    const std::size_t rows = c.base.out.size() / d;
    const std::size_t tiles = (rows / hq + kRegionTokens - 1) / kRegionTokens;
    std::vector<double> region_err(tiles * hq, 0.0);
    for (std::size_t i = 0; i < c.base.out.size(); ++i) {
        const std::size_t row = i / d;
        const std::size_t region = row / hq / kRegionTokens * hq + row % hq;
        region_err[region] = std::max(region_err[region], std::abs(c.base.out[i] - c.truth.out[i]));
    }
    const auto quiet = static_cast<std::size_t>(
        std::min_element(region_err.begin(), region_err.end()) - region_err.begin());
    const double region_bound = kForwardFactor * region_err[quiet] + tensor_atol(c.p.dtype);
    ASSERT_LT(1.5 * region_bound, 0.9 * clean.bound) << "no region is quiet enough to plant in";
    const std::size_t row = (quiet / hq) * kRegionTokens * hq + quiet % hq;  // its first token
    std::vector<float> got = c.base.out;
    got[row * d + 5] += static_cast<float>(0.5 * (1.5 * region_bound + 0.9 * clean.bound));
    EXPECT_EQ(check_out(c, got, Rows{}).outcome, Outcome::passed) << "the plant is too large";
    const TensorCheck t = check_out(c, got, regions(c));
    EXPECT_EQ(t.outcome, Outcome::incorrect) << t.reason;
    EXPECT_EQ(t.worst_region, static_cast<std::int64_t>(quiet));
}

// A wrong merge of the routed (past) blocks, as a bad rescale in one branch of the waves would
// give: the rows of one region (one head, 64 tokens) get their routed part's share off by a
// factor, small enough that the whole-tensor bound would pass it. The region is the one where
// the routed part is largest against the region's own baseline error. (With `dominant` inputs
// the routed block is nearly the whole output, so a share error small enough to pass the
// whole-tensor bound is at the rounding level of every region too: no rule can see it.)
TEST(Planted, WrongRoutedBlockMergeIsCaught) {
    for (InputFamily family : {InputFamily::normal}) {
        const Case c = make_case(family);
        Problem own_only = c.p;
        own_only.topk = 1;
        const ref::Forward own = ref::attention_forward(own_only, c.in, ref::gating(own_only, c.in).selection);
        const TensorCheck clean = check_out(c, c.base.out, Rows{});
        const std::size_t d = static_cast<std::size_t>(c.p.head_dim);
        const std::size_t hq = static_cast<std::size_t>(c.p.heads_q);
        auto region_of = [&](std::size_t i) { return i / d / hq / kRegionTokens * hq + i / d % hq; };
        const std::size_t regions_count = region_of(own.out.size() - 1) + 1;
        std::vector<double> routed(regions_count, 0.0), base_err(regions_count, 0.0);
        for (std::size_t i = 0; i < own.out.size(); ++i) {
            routed[region_of(i)] = std::max(routed[region_of(i)], std::abs(c.truth.out[i] - own.out[i]));
            base_err[region_of(i)] = std::max(base_err[region_of(i)], std::abs(c.base.out[i] - c.truth.out[i]));
        }
        std::size_t target = 0;
        for (std::size_t r = 1; r < regions_count; ++r)
            if (routed[r] / (base_err[r] + 1e-9) > routed[target] / (base_err[target] + 1e-9)) target = r;
        ASSERT_GT(routed[target], 0.0);
        const double eps = 0.5 * (clean.bound - clean.baseline_max_abs_err) / routed[target];
        std::vector<float> got = c.base.out;
        for (std::size_t i = 0; i < got.size(); ++i)
            if (region_of(i) == target) got[i] += static_cast<float>(eps * (c.truth.out[i] - own.out[i]));
        EXPECT_EQ(check_out(c, got, Rows{}).outcome, Outcome::passed)
            << to_string(family) << ": the plant is too large";
        const TensorCheck t = check_out(c, got, regions(c));
        EXPECT_EQ(t.outcome, Outcome::incorrect) << to_string(family) << ": " << t.reason;
        EXPECT_EQ(t.worst_region, static_cast<std::int64_t>(target)) << to_string(family);
    }
}

// One query head of a GQA group wrong by a constant (a kernel that mixes up one head's offset or
// scale): below the whole-tensor bound, caught by the rows.
TEST(Planted, OneHeadOfAGroupIsCaught) {
    const Case c = make_case(InputFamily::normal);
    const TensorCheck clean = check_out(c, c.base.out, Rows{});
    const int h = 1, hq = c.p.heads_q, d = c.p.head_dim;
    std::vector<float> got = c.base.out;
    const double delta = 0.5 * (clean.bound - clean.baseline_max_abs_err);
    for (std::int64_t t = 0; t < c.p.total_tokens(); ++t)
        for (int e = 0; e < d; ++e) got[(t * hq + h) * d + e] += static_cast<float>(delta);
    EXPECT_EQ(check_out(c, got, Rows{}).outcome, Outcome::passed) << "the plant is too large";
    const TensorCheck t = check_out(c, got, regions(c));
    EXPECT_EQ(t.outcome, Outcome::incorrect) << t.reason;
    EXPECT_EQ(t.worst_region % hq, h);
}


// A selection pair swapped away from any tie (a kernel that keeps the wrong candidate on a
// boundary): the block just outside the top k-1 taken instead of the weakest one inside.
TEST(Planted, SwappedSelectionPairIsCaught) {
    const Case c = make_case(InputFamily::normal);
    const int slots = c.gate.selection.slots;
    const ref::BlockScorer scorer(c.p, c.in);
    Selection got = c.gate.selection;
    std::int64_t planted = -1;
    for (std::int64_t pair = 0; pair < static_cast<std::int64_t>(c.gate.boundary_gap.size()); ++pair) {
        const double gap = c.gate.boundary_gap[static_cast<std::size_t>(pair)];
        if (!std::isfinite(gap) || gap < 1e-2) continue;
        // Find the best unselected past block and the weakest selected past block.
        const std::int64_t t = pair / c.p.heads_q;
        const int h = static_cast<int>(pair % c.p.heads_q);
        std::int32_t* row = got.blocks.data() + pair * slots;
        const int own = row[std::count_if(row, row + slots, [](std::int32_t b) { return b >= 0; }) - 1];
        int weakest = -1, rival = -1;
        for (int j = 0; j < own; ++j) {
            const bool taken = std::find(row, row + slots, j) != row + slots;
            const double sj = scorer.score(t, h, j).score;
            if (taken && (weakest < 0 || sj < scorer.score(t, h, weakest).score)) weakest = j;
            if (!taken && (rival < 0 || sj > scorer.score(t, h, rival).score)) rival = j;
        }
        if (weakest < 0 || rival < 0) continue;
        std::replace(row, row + slots, static_cast<std::int32_t>(weakest), static_cast<std::int32_t>(rival));
        std::sort(row, row + std::count_if(row, row + slots, [](std::int32_t b) { return b >= 0; }));
        planted = pair;
        break;
    }
    ASSERT_GE(planted, 0) << "no boundary far from a tie";
    const GatingCheck g = compare_gating(c.p, got, c.gate, c.in);
    EXPECT_EQ(g.outcome, Outcome::incorrect) << g.reason;
    EXPECT_EQ(g.mismatches, 1);
    EXPECT_EQ(g.first_bad_pair, planted);
}

// Exact ties (duplicated key blocks) given to the higher block index: never excused.
TEST(Planted, ExactTieToTheHigherIndexIsCaught) {
    const Case c = make_case(InputFamily::ties);
    const int slots = c.gate.selection.slots;
    Selection got = c.gate.selection;
    std::int64_t flipped = 0;
    const ref::BlockScorer scorer(c.p, c.in);
    for (std::int64_t pair = 0; pair < static_cast<std::int64_t>(c.gate.boundary_gap.size()); ++pair) {
        if (c.gate.boundary_gap[static_cast<std::size_t>(pair)] != 0.0) continue;
        const std::int64_t t = pair / c.p.heads_q;
        const int h = static_cast<int>(pair % c.p.heads_q);
        std::int32_t* row = got.blocks.data() + pair * slots;
        const int count = static_cast<int>(std::count_if(row, row + slots, [](std::int32_t b) { return b >= 0; }));
        const int own = row[count - 1];
        // The highest selected past block, swapped for a higher unselected block of equal score.
        const int weakest = row[count - 2];
        for (int j = own - 1; j > weakest; --j) {
            if (std::find(row, row + count, j) != row + count) continue;
            if (scorer.score(t, h, j).score != scorer.score(t, h, weakest).score) continue;
            row[count - 2] = j;
            std::sort(row, row + count);
            ++flipped;
            break;
        }
    }
    ASSERT_GT(flipped, 0) << "the ties family made no exact tie at a boundary";
    const GatingCheck g = compare_gating(c.p, got, c.gate, c.in);
    EXPECT_EQ(g.outcome, Outcome::incorrect) << g.reason;
    EXPECT_EQ(g.tie_violations, flipped);
    EXPECT_EQ(g.mismatches, flipped);
}

// A kernel that computes 1/sqrt(D) itself instead of reading the problem's scale: right on every
// case with the default scale, so only cases with another scale can catch it. On the quick
// suite's (harness/suite.cpp) the baseline run with 1/sqrt(D) is incorrect, the same baseline
// with the problem's scale passes.
TEST(Planted, AHardCodedSoftmaxScaleIsCaught) {
    int cases = 0, zero_sparsity = 0;
    for (const CheckCase& kase : quick_suite(1)) {
        const Problem& p = kase.problem;
        if (p.softmax_scale == 0.0) continue;
        ++cases;
        zero_sparsity += p.zero_sparsity();
        std::ostringstream what;
        PrintTo(kase, &what);
        const HostInputs in = make_inputs(p, kase.seed, kase.inputs);
        const ref::GatingResult gate = ref::gating(p, in);
        const ref::Forward truth = ref::attention_forward(p, in, gate.selection);
        const ForwardOutput right = ref::baseline_forward(p, in, gate.selection);
        Problem hard_coded = p;
        hard_coded.softmax_scale = 0.0;
        const ForwardOutput wrong = ref::baseline_forward(hard_coded, in, gate.selection);
        const Rows rows{static_cast<std::size_t>(p.head_dim), static_cast<std::size_t>(p.heads_q)};
        const auto judge = [&](const std::vector<float>& got) {
            return compare_tensor("out", got, truth.out, right.out, kForwardFactor, tensor_atol(p.dtype), rows);
        };
        EXPECT_EQ(judge(right.out).outcome, Outcome::passed) << what.str();
        const TensorCheck t = judge(wrong.out);
        EXPECT_EQ(t.outcome, Outcome::incorrect) << what.str() << ": " << t.reason;
    }
    EXPECT_EQ(cases, 3);
    EXPECT_EQ(zero_sparsity, 1);  // the dense entries meet one too
}

// The near-tie excuse stays rare: on every sparse shape of the quick suite, with its input
// families, a plain fp32 gating (the baseline) agrees with float64 beyond near-tie swaps, and
// near ties are at most 2% of the (token, head) pairs.
TEST(GatingRules, NearTiesStaySmallOnTheQuickSuite) {
    for (const CheckCase& kase : quick_suite(1)) {
        const Problem& p = kase.problem;
        if (p.zero_sparsity() || p.topk == 1) continue;
        const HostInputs in = make_inputs(p, kase.seed, kase.inputs);
        const ref::GatingResult gate = ref::gating(p, in);
        const GatingCheck g = compare_gating(p, ref::baseline_gating(p, in), gate, in);
        std::ostringstream what;
        PrintTo(kase, &what);
        EXPECT_EQ(g.outcome, Outcome::passed) << what.str() << ": " << g.reason;
        EXPECT_LE(static_cast<double>(g.near_ties), 0.02 * static_cast<double>(g.pairs)) << what.str();
    }
}

}  // namespace
}  // namespace moba
