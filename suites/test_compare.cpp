// The agreement rules of SEMANTICS.md §5 as harness/compare.cpp applies them: planted errors must be
// caught, NaN must fail, near-ties must be counted rather than called mismatches.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "harness/compare.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

TEST(CompareTensor, PassesWithinTwiceTheBaselineError) {
    const std::vector<double> ref = {1.0, -2.0, 0.5, 0.25};
    const std::vector<float> base = {1.01f, -2.0f, 0.5f, 0.25f};  // baseline error 0.01
    const std::vector<float> got = {1.0f, -2.015f, 0.5f, 0.25f};  // error 0.015 <= 0.02 + atol
    const TensorCheck c = compare_tensor("out", got, ref, base, kForwardFactor, 1e-4);
    EXPECT_EQ(c.outcome, Outcome::passed) << c.reason;
    EXPECT_NEAR(c.max_abs_err, 0.015, 1e-6);
    EXPECT_NEAR(c.baseline_max_abs_err, 0.01, 1e-6);
    EXPECT_NEAR(c.bound, 0.0201, 1e-6);
    EXPECT_EQ(c.worst_index, 1);
    EXPECT_GT(c.rel_l2_err, 0.0);
}

TEST(CompareTensor, PlantedErrorIsIncorrect) {
    const std::vector<double> ref = {1.0, -2.0, 0.5, 0.25};
    const std::vector<float> base = {1.01f, -2.0f, 0.5f, 0.25f};
    const std::vector<float> got = {1.0f, -2.0f, 0.5f, 0.30f};  // 0.05 > 0.0201
    const TensorCheck c = compare_tensor("out", got, ref, base, kForwardFactor, 1e-4);
    EXPECT_EQ(c.outcome, Outcome::incorrect);
    EXPECT_EQ(c.worst_index, 3);
    EXPECT_GT(c.ratio, 1.0);
}

// Two heads x 64 tokens x 2 elements. Head 0 large (|x| ~ 4, baseline error 0.03 on one row);
// head 1 small (|x| ~ 0.1, baseline exact). An error of 0.02 on one row of head 1 is within the
// whole tensor's bound (2 x 0.03 + atol) but 200x its region's: the region rule must catch it.
TEST(CompareTensor, ErrorConfinedToAQuietRegionIsIncorrect) {
    std::vector<double> ref;
    for (int t = 0; t < 64; ++t) ref.insert(ref.end(), {4.0, -4.0, 0.1, -0.1});
    std::vector<float> base(ref.begin(), ref.end());
    base[0] = 4.03f;
    std::vector<float> got(ref.begin(), ref.end());
    const double atol = 1e-4;
    const Rows rows{2, 2};
    EXPECT_EQ(compare_tensor("out", got, ref, base, kForwardFactor, atol, rows).outcome, Outcome::passed);
    got[4 * 10 + 3] = static_cast<float>(-0.1 + 0.02);  // token 10, head 1
    const TensorCheck whole = compare_tensor("out", got, ref, base, kForwardFactor, atol);
    const TensorCheck regions = compare_tensor("out", got, ref, base, kForwardFactor, atol, rows);
    EXPECT_LE(whole.max_abs_ratio, 1.0);
    EXPECT_EQ(regions.outcome, Outcome::incorrect) << regions.reason;
    EXPECT_EQ(regions.worst_region, 1);  // tile 0, head 1
    EXPECT_GT(regions.region_ratio, 100.0);
    EXPECT_DOUBLE_EQ(regions.ratio, regions.region_ratio);
}

// Many elements each a little off, every one under the max bound (the baseline has one larger
// error): the relative L2 error, judged against the baseline's, catches the spread error.
TEST(CompareTensor, SpreadErrorFailsTheRelativeL2Rule) {
    std::vector<double> ref(1000, 1.0);
    std::vector<float> base(1000, 1.0f);
    base[0] = 1.01f;  // baseline: one error of 0.01, relative L2 1e-2 / sqrt(1000) ~ 3.2e-4
    std::vector<float> got(1000, 1.015f);  // every element off by 0.015 < 2 x 0.01 + atol
    const TensorCheck c = compare_tensor("out", got, ref, base, kForwardFactor, 1e-4);
    EXPECT_LE(c.max_abs_ratio, 1.0);
    EXPECT_EQ(c.outcome, Outcome::incorrect) << c.reason;
    EXPECT_GT(c.rel_l2_ratio, 1.0);
}

TEST(CompareTensor, NaNAndInfFail) {
    const std::vector<double> ref = {1.0, 2.0, 3.0};
    const std::vector<float> base = {1.0f, 2.0f, 3.0f};
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        const std::vector<float> got = {1.0f, bad, 3.0f};
        const TensorCheck c = compare_tensor("dq", got, ref, base, kGradientFactor, 1e-3);
        EXPECT_EQ(c.outcome, Outcome::failed);
        EXPECT_EQ(c.nonfinite, 1);
        EXPECT_EQ(c.worst_index, 1);
    }
}

TEST(CompareTensor, NonFiniteReferenceFails) {
    const std::vector<double> ref = {1.0, std::numeric_limits<double>::quiet_NaN()};
    const std::vector<float> v = {1.0f, 1.0f};
    EXPECT_EQ(compare_tensor("out", v, ref, v, 2, 0).outcome, Outcome::failed);
}

TEST(CompareTensor, SizeMismatchFails) {
    const std::vector<double> ref = {1.0, 2.0};
    const std::vector<float> got = {1.0f};
    const std::vector<float> base = {1.0f, 2.0f};
    EXPECT_EQ(compare_tensor("out", got, ref, base, 2, 0).outcome, Outcome::failed);
}

TEST(Atol, RoundingStepNearPointThree) {
    EXPECT_EQ(tensor_atol(DType::bf16), std::ldexp(1.0, -9));
    EXPECT_EQ(tensor_atol(DType::f16), std::ldexp(1.0, -12));
}

// One sequence of 6 tokens, block 2, top-2, fp32, q = (1, 1, 1, 1): tokens 4 and 5 (own block 2)
// choose one of past blocks 0 and 1 by the block means' sums. The keys of block b are all
// (x_b, x_b, x_b, y_b); the reference is ref::gating on exactly these inputs.
struct GatingFixture {
    Problem p;
    HostInputs in;
    ref::GatingResult ref;
    explicit GatingFixture(float block0_last = 0.25f, float block1_last = 0.375f) {
        p.seqlens = {6};
        p.heads_q = p.heads_kv = 1;
        p.head_dim = 4;
        p.block = 2;
        p.topk = 2;
        p.dtype = DType::f32;
        in.q.assign(24, 1.0f);
        in.v.assign(24, 0.5f);
        in.dout.assign(24, 0.25f);
        const float x[3] = {0.25f, 0.375f, 0.125f};
        const float y[3] = {block0_last, block1_last, 0.125f};
        for (int t = 0; t < 6; ++t)
            for (int d = 0; d < 4; ++d) in.k.push_back(d < 3 ? x[t / 2] : y[t / 2]);
        ref = ref::gating(p, in);
    }
};

TEST(CompareGating, EqualSetsPass) {
    GatingFixture f;
    ASSERT_EQ(f.ref.selection.blocks[8], 1);  // block 1 (score 1.5) beats block 0 (1.0)
    const GatingCheck c = compare_gating(f.p, f.ref.selection, f.ref, f.in);
    EXPECT_EQ(c.outcome, Outcome::passed) << c.reason;
    EXPECT_EQ(c.pairs, 6);
    EXPECT_EQ(c.mismatches, 0);
    EXPECT_EQ(c.near_ties, 0);
}

TEST(CompareGating, MismatchAwayFromTiesIsIncorrect) {
    GatingFixture f;
    Selection got = f.ref.selection;
    got.blocks[8] = 0;  // token 4 picks block 0 although block 1 scored 0.5 higher
    got.blocks[9] = 2;
    const GatingCheck c = compare_gating(f.p, got, f.ref, f.in);
    EXPECT_EQ(c.outcome, Outcome::incorrect);
    EXPECT_EQ(c.mismatches, 1);
    EXPECT_EQ(c.tie_violations, 0);
    EXPECT_EQ(c.first_bad_pair, 4);
}

// Block 0 scores 2^-20 below block 1: far inside the fp32 margin, so taking it is excused.
TEST(CompareGating, SwapAtNearTieIsCountedNotFailed) {
    GatingFixture f(0.375f - std::ldexp(1.0f, -20), 0.375f);
    for (int x : {0, 1, 2}) f.in.k[static_cast<std::size_t>(x)] = 0.375f;  // token 0: x = 0.375
    for (int x : {4, 5, 6}) f.in.k[static_cast<std::size_t>(x)] = 0.375f;  // token 1
    f.ref = ref::gating(f.p, f.in);
    ASSERT_EQ(f.ref.selection.blocks[8], 1);
    ASSERT_GT(f.ref.boundary_gap[4], 0.0);
    Selection got = f.ref.selection;
    got.blocks[8] = 0;
    got.blocks[9] = 2;
    const GatingCheck c = compare_gating(f.p, got, f.ref, f.in);
    EXPECT_EQ(c.outcome, Outcome::passed) << c.reason;
    EXPECT_EQ(c.near_ties, 2);  // tokens 4 and 5
    EXPECT_EQ(c.near_tie_mismatches, 1);
    EXPECT_EQ(c.mismatches, 0);
}

// Blocks 0 and 1 equal: an exact tie, which the lower index wins; taking block 1 is never excused.
TEST(CompareGating, ExactTieGivenToTheHigherIndexIsIncorrect) {
    GatingFixture f(0.375f, 0.375f);
    for (int x : {0, 1, 2, 4, 5, 6}) f.in.k[static_cast<std::size_t>(x)] = 0.375f;
    f.ref = ref::gating(f.p, f.in);
    ASSERT_EQ(f.ref.boundary_gap[4], 0.0);
    ASSERT_EQ(f.ref.selection.blocks[8], 0);
    Selection got = f.ref.selection;
    got.blocks[8] = 1;
    const GatingCheck c = compare_gating(f.p, got, f.ref, f.in);
    EXPECT_EQ(c.outcome, Outcome::incorrect) << c.reason;
    EXPECT_EQ(c.exact_ties, 2);
    EXPECT_EQ(c.mismatches, 1);
    EXPECT_EQ(c.tie_violations, 1);
}

TEST(CompareGating, InvalidListsAreIncorrect) {
    GatingFixture f;
    // (token, its two slots): each list breaks one structural rule.
    const struct { int token; std::int32_t a, b; const char* what; } cases[] = {
        {0, 0, 1, "future block"},
        {2, 0, -1, "own block missing"},
        {4, 2, -1, "one block where two are due"},
        {4, 2, 1, "not ascending"},
        {4, -1, 2, "padding before a block"},
        {4, 1, 7, "out of range"},
    };
    for (const auto& bad : cases) {
        Selection got = f.ref.selection;
        got.blocks[2 * bad.token] = bad.a;
        got.blocks[2 * bad.token + 1] = bad.b;
        const GatingCheck c = compare_gating(f.p, got, f.ref, f.in);
        EXPECT_EQ(c.outcome, Outcome::incorrect) << bad.what;
        EXPECT_EQ(c.invalid, 1) << bad.what;
    }
}

// Sampled rows (moba bench): the same judgement on the rows of tokens 5, 4 and 0 (any order),
// with the float64 gating of those rows only and the scores of differing blocks recomputed from
// the rows' q and the full k.
TEST(CompareGating, SampledRowsAreJudgedLikeTheFullSelection) {
    GatingFixture f(0.375f, 0.375f);  // exact ties at tokens 4 and 5
    for (int x : {0, 1, 2, 4, 5, 6}) f.in.k[static_cast<std::size_t>(x)] = 0.375f;
    ref::RowInputs rows;
    rows.tokens = {5, 4, 0};
    rows.q_rows.assign(12, 1.0f);
    rows.k = &f.in.k;
    rows.v = &f.in.v;
    const ref::GatingResult truth = ref::gating_rows(f.p, rows);
    ASSERT_EQ(truth.selection.blocks, (std::vector<std::int32_t>{0, 2, 0, 2, 0, -1}));
    GatingCheck c = compare_gating_rows(f.p, truth.selection, truth, rows);
    EXPECT_EQ(c.outcome, Outcome::passed) << c.reason;
    EXPECT_EQ(c.pairs, 3);
    EXPECT_EQ(c.exact_ties, 2);
    Selection got = truth.selection;
    got.blocks[2] = 1;  // token 4 gives the exact tie to the higher index
    c = compare_gating_rows(f.p, got, truth, rows);
    EXPECT_EQ(c.outcome, Outcome::incorrect);
    EXPECT_EQ(c.tie_violations, 1);
    EXPECT_EQ(c.first_bad_pair, 1);
    EXPECT_NE(c.reason.find("token 4, head 0"), std::string::npos) << c.reason;
    got = truth.selection;
    got.blocks[5] = 1;  // token 0 (own block 0) names the future block 1
    c = compare_gating_rows(f.p, got, truth, rows);
    EXPECT_EQ(c.invalid, 1);
    got.blocks.pop_back();
    EXPECT_EQ(compare_gating_rows(f.p, got, truth, rows).outcome, Outcome::failed);
}

// The margin grows with sqrt(Bs) and sqrt(D), not with Bs: at block 4096 it is 8x tighter than
// the first-order worst case 2 (D + Bs + 1) u M it replaced (1024 u M against 8322 u M).
TEST(CompareGating, MarginGrowsWithTheSquareRootOfTheBlock) {
    Problem p;
    p.block = 64;
    p.head_dim = 64;
    p.dtype = DType::f16;
    const double u = std::ldexp(1.0, -24);
    EXPECT_DOUBLE_EQ(gating_margin(p, 1.0, 0.0), 2.0 * 8 * u * 8);
    EXPECT_DOUBLE_EQ(gating_margin(p, 0.0, 1.0), 2.0 * (8 * u * 8 + std::ldexp(1.0, -22)));
    EXPECT_DOUBLE_EQ(gating_margin(p, 0.0, 0.0), 0.0);
    p.block = 4096;
    EXPECT_LT(8 * gating_margin(p, 1.0, 0.0), 2.0 * (64 + 4096 + 1) * u);
}

}  // namespace
}  // namespace moba

namespace moba {
namespace {

// SPEC.md §2.7: block 1's mean, 1 + 2^-8, is above block 0's (1) exactly but rounds to 1 in
// bf16 (a tie to even), where the lower index wins. An implementation that picks block 0 is
// wrong under the exact convention and right under the rounded one, where it is counted apart.
TEST(CompareGating, RoundedBlockMeansExplainTheDifference) {
    Problem p;
    p.seqlens = {6};
    p.heads_q = p.heads_kv = 1;
    p.head_dim = 1;
    p.block = 2;
    p.topk = 2;
    p.dtype = DType::bf16;
    HostInputs in;
    in.q = std::vector<float>(6, 1.0f);
    in.k = {1.0f, 1.0f, 1.0f, 1.0f + std::ldexp(1.0f, -7), 0.5f, 0.5f};
    in.v = in.q;
    in.dout = in.q;
    const ref::GatingResult gate = ref::gating(p, in);
    ASSERT_EQ(gate.selection.blocks[8], 1);  // token 4: blocks {1, 2}
    Selection got = gate.selection;
    for (int token : {4, 5}) got.blocks[static_cast<std::size_t>(2 * token)] = 0;  // {0, 2}

    const GatingCheck exact = compare_gating(p, got, gate, in);
    EXPECT_EQ(exact.outcome, Outcome::incorrect);
    EXPECT_EQ(exact.mismatches, 2);
    EXPECT_EQ(exact.rounding_mismatches, 0);

    const GatingCheck rounded = compare_gating(p, got, gate, in, true);
    EXPECT_EQ(rounded.outcome, Outcome::passed) << rounded.reason;
    EXPECT_EQ(rounded.mismatches, 0);
    EXPECT_EQ(rounded.rounding_mismatches, 2);

    // Where block 0's mean is 0.5, rounding explains nothing: taking it stays a mismatch.
    in.k[0] = in.k[1] = 0.5f;
    const ref::GatingResult gate2 = ref::gating(p, in);
    ASSERT_EQ(gate2.selection.blocks[8], 1);
    const GatingCheck wrong = compare_gating(p, got, gate2, in, true);
    EXPECT_EQ(wrong.outcome, Outcome::incorrect);
    EXPECT_EQ(wrong.mismatches, 2);
    EXPECT_EQ(wrong.rounding_mismatches, 0);
}

}  // namespace
}  // namespace moba
