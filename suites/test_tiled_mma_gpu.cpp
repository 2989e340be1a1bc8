// The tensor-core MoBA implementations (tiled_mma on mma.sync, wgmma_moba on warpgroup MMA;
// both with the fused gating and the deterministic backward) against the float64 reference
// across the quick matrix: gating, forward and gradient agreement on every case, one reference
// computation per case for both. Plus bitwise determinism of forward and backward over 20
// repeats, which the wave design promises without atomics, for them and for the dense entries.
// Skips without a GPU.
#include <cstring>
#include <map>
#include <stdexcept>
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
#include "reference/reference.hpp"

namespace moba {
namespace {

const std::vector<std::string> kMobaImpls = {"tiled_mma", "wgmma_moba"};

const Implementation& impl_named(const std::string& name) {
    const Implementation* impl = find_implementation(name);
    if (impl == nullptr) throw std::logic_error("not registered: " + name);
    return *impl;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// 20 more forward+backward runs give bitwise the same tensors as `first`.
void expect_repeats_bitwise(const Implementation& impl, const DeviceInputs& din, const Selection& sel,
                            const AttentionRun& first) {
    for (int repeat = 0; repeat < 20; ++repeat) {
        const AttentionRun again = run_attention(impl, din, sel, true);
        EXPECT_TRUE(same_bits(again.forward.out, first.forward.out)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.forward.lse, first.forward.lse)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.gradients.dq, first.gradients.dq)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.gradients.dk, first.gradients.dk)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.gradients.dv, first.gradients.dv)) << "repeat " << repeat;
    }
}

class TiledQuickMatrix : public ::testing::TestWithParam<CheckCase> {};

TEST_P(TiledQuickMatrix, AgreesWithFloat64Reference) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    for (const auto& name : kMobaImpls) options.impls.push_back(&impl_named(name));
    options.add_zero_sparsity = false;
    const auto records = run_checks(GetParam(), options);
    EXPECT_EQ(records.size(), 6u * kMobaImpls.size());  // gating + out + lse + dq + dk + dv each
    std::map<std::string, int> per_impl;
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
        ++per_impl[r["impl"].get<std::string>()];
    }
    for (const auto& name : kMobaImpls) EXPECT_EQ(per_impl[name], 6) << name;
}

std::string case_name(const ::testing::TestParamInfo<CheckCase>& info) {
    const Problem& p = info.param.problem;
    return fmt::format("{}_{}_D{}_L{}_k{}_{}", head_layout(p.heads_q, p.heads_kv), to_string(p.dtype),
                       p.head_dim, fmt::join(p.seqlens, "_"), p.topk, info.index);
}

INSTANTIATE_TEST_SUITE_P(Quick, TiledQuickMatrix, ::testing::ValuesIn(quick_suite(3000)), case_name);

// The determinism tests' problem: varlen with a 1-token sequence, GQA 8:2 (the dense dK/dV
// splits each group over CTAs here), D 128, block 64.
Problem determinism_problem(int topk) {
    Problem p;
    p.seqlens = {3000, 700, 1};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 64;
    p.topk = topk;
    return p;
}

class MobaDeterminism : public ::testing::TestWithParam<std::string> {};

TEST_P(MobaDeterminism, ForwardAndBackwardAreBitwiseDeterministic) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named(GetParam());
    const Problem p = determinism_problem(4);
    const HostInputs in = make_inputs(p, 11);
    DeviceInputs din(impl, p, in);
    const Selection sel = run_gating(impl, din);
    EXPECT_EQ(run_gating(impl, din).blocks, sel.blocks);
    const AttentionRun first = run_attention(impl, din, sel, true);
    expect_repeats_bitwise(impl, din, sel, first);
}

INSTANTIATE_TEST_SUITE_P(Moba, MobaDeterminism, ::testing::ValuesIn(kMobaImpls));

// The dense entries' backward (wgmma_dense: dQ per row tile, dK/dV per key tile, each in one CTA
// in a fixed order) must repeat bitwise too: GQA, varlen, odd lengths.
class DenseDeterminism : public ::testing::TestWithParam<std::string> {};

TEST_P(DenseDeterminism, ForwardAndBackwardAreBitwiseDeterministic) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named(GetParam());
    const Problem p = determinism_problem(3000 / 64 + 1);  // every block: zero sparsity
    ASSERT_TRUE(p.zero_sparsity());
    const HostInputs in = make_inputs(p, 12);
    DeviceInputs din(impl, p, in);
    const Selection sel = ref::full_selection(p);
    const AttentionRun first = run_attention(impl, din, sel, true);
    expect_repeats_bitwise(impl, din, sel, first);
}

INSTANTIATE_TEST_SUITE_P(Dense, DenseDeterminism, ::testing::Values("tiled_mma_dense", "wgmma_dense"));

}  // namespace
}  // namespace moba
