// tiled_mma (fused gating, block-sparse tensor-core forward and backward) against the float64
// reference across the quick matrix: gating, forward and gradient agreement on every case.
// Plus bitwise determinism of forward and backward over 20 repeats, which the wave design
// promises without atomics. Skips without a GPU.
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/check.hpp"
#include "harness/gpu_run.hpp"
#include "harness/inputs.hpp"
#include "harness/suite.hpp"

namespace moba {
namespace {

const Implementation& tiled() { return *find_implementation("tiled_mma"); }

class TiledQuickMatrix : public ::testing::TestWithParam<CheckCase> {};

TEST_P(TiledQuickMatrix, AgreesWithFloat64Reference) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    options.impls = {&tiled()};
    options.add_zero_sparsity = false;
    const auto records = run_checks(GetParam(), options);
    EXPECT_EQ(records.size(), 6u);  // gating + out + lse + dq + dk + dv
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
        EXPECT_EQ(r["impl"], "tiled_mma") << r.dump(1);
    }
}

std::string case_name(const ::testing::TestParamInfo<CheckCase>& info) {
    const Problem& p = info.param.problem;
    return fmt::format("{}_{}_D{}_L{}_k{}_{}", head_layout(p.heads_q, p.heads_kv), to_string(p.dtype),
                       p.head_dim, fmt::join(p.seqlens, "_"), p.topk, info.index);
}

INSTANTIATE_TEST_SUITE_P(Quick, TiledQuickMatrix, ::testing::ValuesIn(quick_suite(3000)), case_name);

TEST(TiledMmaGpu, ForwardAndBackwardAreBitwiseDeterministic) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {3000, 700, 1};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 64;
    p.topk = 4;
    const HostInputs in = make_inputs(p, 11);
    DeviceInputs din(tiled(), p, in);
    const Selection sel = run_gating(tiled(), din);
    EXPECT_EQ(run_gating(tiled(), din).blocks, sel.blocks);
    const AttentionRun first = run_attention(tiled(), din, sel, true);
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
    };
    for (int repeat = 0; repeat < 20; ++repeat) {
        const AttentionRun again = run_attention(tiled(), din, sel, true);
        EXPECT_TRUE(same(again.forward.out, first.forward.out)) << "repeat " << repeat;
        EXPECT_TRUE(same(again.forward.lse, first.forward.lse)) << "repeat " << repeat;
        EXPECT_TRUE(same(again.gradients.dq, first.gradients.dq)) << "repeat " << repeat;
        EXPECT_TRUE(same(again.gradients.dk, first.gradients.dk)) << "repeat " << repeat;
        EXPECT_TRUE(same(again.gradients.dv, first.gradients.dv)) << "repeat " << repeat;
    }
}

}  // namespace
}  // namespace moba
