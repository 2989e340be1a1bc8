// The float64 GPU truth (reference/gpu/attention64.hpp) against the float64 CPU reference on
// small shapes: MHA, GQA, MQA, varlen with a length-1 sequence, partial last blocks, top-k 1,
// zero sparsity, input families with a dominant block and exact ties; split tiles; bitwise
// repeatability; malformed selections refused before any GPU work. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_test_util.hpp"
#include "test_util.hpp"
#include "harness/inputs.hpp"
#include "reference/gpu/attention64.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

struct Shape {
    const char* name;
    std::vector<int> seqlens;
    int heads_q, heads_kv, dim, block, topk;  // topk 0: every block (zero sparsity)
    InputFamily family;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.name; }

Problem problem_of(const Shape& s) {
    Problem p = test::make_problem(s.seqlens, s.heads_q, s.heads_kv, s.dim, s.block, 1, DType::bf16);
    p.topk = s.topk > 0 ? s.topk : p.max_blocks();  // k <= 0 means "k >= n"
    return p;
}

const std::vector<Shape>& shapes() {
    static const std::vector<Shape> all = {
        {"mha", {300}, 4, 4, 64, 32, 3, InputFamily::normal},
        {"gqa_varlen", {1000, 17, 1, 513}, 4, 2, 128, 64, 4, InputFamily::dominant},
        {"mqa_partial", {777}, 4, 1, 64, 128, 2, InputFamily::ties},
        {"topk1", {200, 33}, 2, 2, 64, 16, 1, InputFamily::sink},
        {"small_blocks", {2049}, 4, 2, 32, 16, 5, InputFamily::recency},
        {"zero_sparsity", {600, 1, 33}, 2, 1, 64, 64, 0, InputFamily::dominant},
    };
    return all;
}

// max |got - want| <= rel * max |want| (all finite, same size).
void expect_close(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                  double rel = 1e-12) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << what << "[" << i << "] = " << got[i];
        err = std::max(err, std::abs(got[i] - want[i]));
        scale = std::max(scale, std::abs(want[i]));
    }
    EXPECT_LE(err, rel * scale) << what << ": max error " << err << " against max |ref| " << scale;
}

void expect_agrees(const ref::gpu::Result& gpu, const ref::Forward& f, const ref::Gradients& g) {
    expect_close("out", gpu.forward.out, f.out);
    expect_close("lse", gpu.forward.lse, f.lse);
    expect_close("dq", gpu.gradients.dq, g.dq);
    expect_close("dk", gpu.gradients.dk, g.dk);
    expect_close("dv", gpu.gradients.dv, g.dv);
}

class ReferenceGpu : public ::testing::TestWithParam<Shape> {};

TEST_P(ReferenceGpu, AgreesWithTheCpuReference) {
    MOBA_REQUIRE_GPU();
    const Problem p = problem_of(GetParam());
    const HostInputs in = make_inputs(p, 101, GetParam().family);
    const Selection sel = ref::gating(p, in).selection;
    expect_agrees(ref::gpu::attention(p, in, sel), ref::attention_forward(p, in, sel),
                  ref::attention_backward(p, in, sel));
    // The forward-only and backward-only entry points are the same pass.
    expect_close("out (forward only)", ref::gpu::attention_forward(p, in, sel).out,
                 ref::attention_forward(p, in, sel).out);
    expect_close("dk (backward only)", ref::gpu::attention_backward(p, in, sel).dk,
                 ref::attention_backward(p, in, sel).dk);
}

TEST_P(ReferenceGpu, FullCausalAgreesWithTheCpuFullAttention) {
    MOBA_REQUIRE_GPU();
    const Problem p = problem_of(GetParam());
    const HostInputs in = make_inputs(p, 202, GetParam().family);
    const ref::Forward f = ref::full_attention_forward(p, in);
    const ref::Gradients g = ref::full_attention_backward(p, in);
    expect_agrees(ref::gpu::full_attention(p, in), f, g);
    Problem all = p;
    all.topk = p.max_blocks();
    expect_agrees(ref::gpu::attention(all, in, ref::full_selection(all)), f, g);
}

// A workspace of a few thousand scores splits every tile into runs of a few rows.
TEST_P(ReferenceGpu, SplitTilesAgreeWithTheCpuReference) {
    MOBA_REQUIRE_GPU();
    const Problem p = problem_of(GetParam());
    const HostInputs in = make_inputs(p, 303, GetParam().family);
    const Selection sel = ref::gating(p, in).selection;
    const std::int64_t workspace = std::max(4 * p.max_seqlen(), 4096);
    expect_agrees(ref::gpu::attention(p, in, sel, workspace), ref::attention_forward(p, in, sel),
                  ref::attention_backward(p, in, sel));
    expect_agrees(ref::gpu::full_attention(p, in, workspace), ref::full_attention_forward(p, in),
                  ref::full_attention_backward(p, in));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReferenceGpu, ::testing::ValuesIn(shapes()),
                         [](const ::testing::TestParamInfo<Shape>& param) {
                             return std::string(param.param.name);
                         });

TEST(ReferenceGpuRuns, AreBitwiseRepeatable) {
    MOBA_REQUIRE_GPU();
    const Problem p = problem_of(shapes()[1]);
    const HostInputs in = make_inputs(p, 404, InputFamily::normal);
    const Selection sel = ref::gating(p, in).selection;
    const ref::gpu::Result a = ref::gpu::attention(p, in, sel);
    const ref::gpu::Result b = ref::gpu::attention(p, in, sel);
    auto same = [](const std::vector<double>& x, const std::vector<double>& y) {
        return x.size() == y.size() &&
               std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
    };
    EXPECT_TRUE(same(a.forward.out, b.forward.out));
    EXPECT_TRUE(same(a.forward.lse, b.forward.lse));
    EXPECT_TRUE(same(a.gradients.dq, b.gradients.dq));
    EXPECT_TRUE(same(a.gradients.dk, b.gradients.dk));
    EXPECT_TRUE(same(a.gradients.dv, b.gradients.dv));
}

// A malformed selection fails loudly (std::invalid_argument naming the entry), never computes.
TEST(ReferenceGpuRuns, MalformedSelectionsAreRefused) {
    MOBA_REQUIRE_GPU();
    const Problem p = problem_of(shapes()[0]);  // 300 tokens, block 32, top-k 3
    const HostInputs in = make_inputs(p, 505, InputFamily::normal);
    const Selection good = ref::gating(p, in).selection;
    auto refused = [&](const Selection& bad, const std::string& needle) {
        try {
            ref::gpu::attention(p, in, bad);
            ADD_FAILURE() << "accepted a selection that should mention '" << needle << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
        EXPECT_THROW(ref::gpu::attention_forward(p, in, bad), std::invalid_argument);
    };
    const std::int64_t row = (299 * p.heads_q + 2) * good.slots;  // own block 9, two past blocks
    ASSERT_EQ(good.blocks[row + 2], 9);
    Selection no_own = good;
    no_own.blocks[row + 2] = -1;
    refused(no_own, "token 299, head 2");
    Selection future = good;
    future.blocks[row + 2] = 10;
    refused(future, "after the own block");
    Selection unsorted = good;
    std::swap(unsorted.blocks[row], unsorted.blocks[row + 2]);
    refused(unsorted, "token 299");
    Selection narrow = good;
    narrow.slots = 2;
    refused(narrow, "2 slots");
    // Still usable afterwards.
    EXPECT_EQ(ref::gpu::attention_forward(p, in, good).out.size(),
              static_cast<std::size_t>(p.q_elems()));
}

}  // namespace
}  // namespace moba
