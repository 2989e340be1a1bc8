// The checks must catch realistic kernel bugs: wrong outputs planted on purpose into an
// otherwise correct result (the same-precision baseline) are judged by the same functions
// `moba check` uses (harness/compare.hpp, SEMANTICS.md §5), on the CPU. Each plant is sized so
// the old whole-tensor max rule alone would let it through; the test asserts that too, so a
// plant that grows large enough to be caught anyway cannot make the test pass vacuously.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "harness/compare.hpp"
#include "harness/inputs.hpp"
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

TensorCheck check_out(const Case& c, const std::vector<float>& got, std::size_t row_len) {
    return compare_tensor("out", got, c.truth.out, c.base.out, kForwardFactor,
                          tensor_atol(c.p.dtype), row_len);
}

std::size_t row_len(const Case& c) { return static_cast<std::size_t>(c.p.head_dim); }

TEST(Planted, TheUnplantedBaselinePasses) {
    for (InputFamily family : all_input_families()) {
        const Case c = make_case(family);
        const TensorCheck t = check_out(c, c.base.out, row_len(c));
        EXPECT_EQ(t.outcome, Outcome::passed) << to_string(family) << ": " << t.reason;
    }
}

// One (token, head) row off by a little: the row with the smallest baseline error gets an
// error above its own bound but below the whole tensor's.
TEST(Planted, OneWrongRowIsCaught) {
    const Case c = make_case(InputFamily::normal);
    const std::size_t d = row_len(c);
    const TensorCheck clean = check_out(c, c.base.out, 0);
    std::size_t best = 0;
    double best_err = 1e300;
    for (std::size_t r = 0; r * d < c.base.out.size(); ++r) {
        double e = 0;
        for (std::size_t i = r * d; i < (r + 1) * d; ++i)
            e = std::max(e, std::abs(c.base.out[i] - c.truth.out[i]));
        if (e < best_err) best_err = e, best = r;
    }
    const double row_bound = kForwardFactor * best_err + tensor_atol(c.p.dtype);
    ASSERT_LT(1.5 * row_bound, 0.9 * clean.bound) << "no row is quiet enough to plant in";
    std::vector<float> got = c.base.out;
    got[best * d + 5] += static_cast<float>(0.5 * (1.5 * row_bound + 0.9 * clean.bound));
    EXPECT_EQ(check_out(c, got, 0).outcome, Outcome::passed) << "the plant is too large";
    const TensorCheck t = check_out(c, got, d);
    EXPECT_EQ(t.outcome, Outcome::incorrect) << t.reason;
    EXPECT_EQ(t.worst_row, static_cast<std::int64_t>(best));
}

// A wrong merge of the routed (past) blocks, as a bad rescale in the waves would give: every row
// with a routed block gets its routed part's share off by a factor, small enough that the
// whole-tensor bound would pass it.
TEST(Planted, WrongRoutedBlockMergeIsCaught) {
    for (InputFamily family : {InputFamily::normal, InputFamily::dominant}) {
        const Case c = make_case(family);
        Problem own_only = c.p;
        own_only.topk = 1;
        const ref::Forward own = ref::attention_forward(own_only, c.in, ref::gating(own_only, c.in).selection);
        const TensorCheck clean = check_out(c, c.base.out, 0);
        double largest = 0;
        for (std::size_t i = 0; i < own.out.size(); ++i)
            largest = std::max(largest, std::abs(c.truth.out[i] - own.out[i]));
        ASSERT_GT(largest, 0.0);
        const double eps = 0.5 * (clean.bound - clean.baseline_max_abs_err) / largest;
        std::vector<float> got = c.base.out;
        for (std::size_t i = 0; i < got.size(); ++i)
            got[i] += static_cast<float>(eps * (c.truth.out[i] - own.out[i]));
        EXPECT_EQ(check_out(c, got, 0).outcome, Outcome::passed)
            << to_string(family) << ": the plant is too large";
        const TensorCheck t = check_out(c, got, row_len(c));
        EXPECT_EQ(t.outcome, Outcome::incorrect) << to_string(family) << ": " << t.reason;
    }
}

// One query head of a GQA group wrong by a constant (a kernel that mixes up one head's offset or
// scale): below the whole-tensor bound, caught by the rows.
TEST(Planted, OneHeadOfAGroupIsCaught) {
    const Case c = make_case(InputFamily::normal);
    const TensorCheck clean = check_out(c, c.base.out, 0);
    const int h = 1, hq = c.p.heads_q, d = c.p.head_dim;
    std::vector<float> got = c.base.out;
    const double delta = 0.5 * (clean.bound - clean.baseline_max_abs_err);
    for (std::int64_t t = 0; t < c.p.total_tokens(); ++t)
        for (int e = 0; e < d; ++e) got[(t * hq + h) * d + e] += static_cast<float>(delta);
    EXPECT_EQ(check_out(c, got, 0).outcome, Outcome::passed) << "the plant is too large";
    const TensorCheck t = check_out(c, got, row_len(c));
    EXPECT_EQ(t.outcome, Outcome::incorrect) << t.reason;
    EXPECT_EQ(t.worst_row % hq, h);
}

}  // namespace
}  // namespace moba
