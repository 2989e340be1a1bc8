// The tensor-core MoBA implementations (tiled_mma on mma.sync, wgmma_moba on warpgroup MMA;
// both with the fused gating and the deterministic backward) against the float64 reference
// across the quick matrix: gating, forward and gradient agreement on every case, one reference
// computation per case for both. Plus bitwise determinism of forward and backward over 20
// repeats, for them and for the dense entries; a past block scoring far above the own block
// (wgmma_moba's rescaling merge); head passes against one pass, bitwise; and the fused gating
// over many tiles of block means and on all-equal scores. wgmma_moba_atomic (head dim 128; its
// dq summed in no fixed order) beside them wherever the head dim is 128: the quick matrix, the
// dominant past block, head passes (dk, dv bitwise, dq against float64) and repeats (dk, dv
// bitwise, dq within a rounding step). Skips without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdlib>
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
#include "core/constants.hpp"
#include "harness/check.hpp"
#include "harness/compare.hpp"
#include "harness/gpu_run.hpp"
#include "harness/inputs.hpp"
#include "harness/scoped_env.hpp"
#include "harness/suite.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/tiled_mma/backward.hpp"
#include "kernels/wgmma/wgmma.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

const std::vector<std::string> kMobaImpls = {"tiled_mma", "wgmma_moba"};
// The 5-product backward's entry: head dim 128 only, dq not bitwise repeatable.
constexpr const char* kAtomicImpl = "wgmma_moba_atomic";

// kMobaImpls, and kAtomicImpl where it implements the head dim.
std::vector<std::string> moba_impls_for(int head_dim) {
    std::vector<std::string> names = kMobaImpls;
    if (head_dim == 128) names.emplace_back(kAtomicImpl);
    return names;
}

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
    const std::vector<std::string> names = moba_impls_for(GetParam().problem.head_dim);
    for (const auto& name : names) options.impls.push_back(&impl_named(name));
    options.add_zero_sparsity = false;
    const auto records = run_checks(GetParam(), options);
    EXPECT_EQ(records.size(), 6u * names.size());  // gating + out + lse + dq + dk + dv each
    std::map<std::string, int> per_impl;
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
        ++per_impl[r["impl"].get<std::string>()];
    }
    for (const auto& name : names) EXPECT_EQ(per_impl[name], 6) << name;
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

// dq of two runs of the atomic entry: the same fp32 terms summed in another order, then rounded
// to the dtype, so at most a rounding step apart (2^-7 of the larger magnitude covers bf16's
// 8-bit significand and fp16's 11; a race or a lost add moves far more).
void expect_dq_within_rounding(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    int bad = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::abs(a[i] - b[i]) > 0x1p-7f * std::max(std::abs(a[i]), std::abs(b[i])) + 1e-6f && ++bad <= 3)
            ADD_FAILURE() << what << ": dq[" << i << "] " << a[i] << " against " << b[i];
    EXPECT_EQ(bad, 0) << what;
}

// The atomic entry: out, lse (wgmma_moba's forward), dk and dv (a fixed order of rows per key
// tile) repeat bitwise over 20 runs; dq within a rounding step.
TEST(MobaAtomicDeterminism, DkDvBitwiseDqWithinRounding) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named(kAtomicImpl);
    const Problem p = determinism_problem(4);
    const HostInputs in = make_inputs(p, 11);
    DeviceInputs din(impl, p, in);
    const Selection sel = run_gating(impl, din);
    const AttentionRun first = run_attention(impl, din, sel, true);
    for (int repeat = 0; repeat < 20; ++repeat) {
        const AttentionRun again = run_attention(impl, din, sel, true);
        EXPECT_TRUE(same_bits(again.forward.out, first.forward.out)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.forward.lse, first.forward.lse)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.gradients.dk, first.gradients.dk)) << "repeat " << repeat;
        EXPECT_TRUE(same_bits(again.gradients.dv, first.gradients.dv)) << "repeat " << repeat;
        expect_dq_within_rounding(again.gradients.dq, first.gradients.dq, "repeat");
    }
}

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

// Keys of every sequence's block 1 scaled by 16 (exact in bf16 and fp16): rows that attend to
// it score far above anything in their own block. wgmma_moba's waves merge by plain adds while
// a block stays below the accumulator's reference (the own-block max + 32 in log2 units) and
// rescale the accumulator when it does not; the quick matrix's normal inputs never leave the
// first path, these do, in the first wave and in later ones. tiled_mma (always rescaling) too.
struct DominantCase {
    DType dtype;
    int head_dim;
    int heads_q;
    int heads_kv;
};

Problem dominant_problem(const DominantCase& c) {
    Problem p;
    p.seqlens = {1500, 700, 1};
    p.heads_q = c.heads_q;
    p.heads_kv = c.heads_kv;
    p.head_dim = c.head_dim;
    p.dtype = c.dtype;
    p.block = 128;
    p.topk = 4;
    return p;
}

HostInputs dominant_inputs(const Problem& p) {
    HostInputs in = make_inputs(p, 31);
    const auto row = static_cast<std::size_t>(p.heads_kv * p.head_dim);
    int start = 0;
    for (const int len : p.seqlens) {
        for (int j = p.block; j < std::min(len, 2 * p.block); ++j)
            for (std::size_t e = 0; e < row; ++e) in.k[(start + j) * row + e] *= 16.0f;
        start += len;
    }
    return in;
}

// (token, head) rows whose selected past blocks score more than `margin` (log2 units) above
// the row's own-block maximum: those a wave must merge by rescaling.
int rows_past_reference(const Problem& p, const HostInputs& in, const Selection& sel, double margin) {
    const int d = p.head_dim;
    const double scale_log2 = p.scale() * kLog2e;
    const auto score = [&](std::int64_t token, int h, std::int64_t key) {
        double s = 0.0;
        for (int e = 0; e < d; ++e)
            s += static_cast<double>(in.q[(token * p.heads_q + h) * d + e]) *
                 in.k[(key * p.heads_kv + h / p.group()) * d + e];
        return s * scale_log2;
    };
    int rows = 0;
    std::int64_t start = 0;
    for (const int len : p.seqlens) {
        for (int i = 0; i < len; ++i)
            for (int h = 0; h < p.heads_q; ++h) {
                const std::int64_t token = start + i;
                const int own = i / p.block;
                double own_max = -1e300;
                for (int j = own * p.block; j <= i; ++j) own_max = std::max(own_max, score(token, h, start + j));
                double past_max = -1e300;
                for (int slot = 0; slot < sel.slots; ++slot) {
                    const int b = sel.blocks[(token * p.heads_q + h) * sel.slots + slot];
                    if (b < 0 || b == own) continue;
                    for (int j = b * p.block; j < (b + 1) * p.block; ++j)
                        past_max = std::max(past_max, score(token, h, start + j));
                }
                if (past_max > own_max + margin) ++rows;
            }
        start += len;
    }
    return rows;
}

class DominantPastBlock : public ::testing::TestWithParam<DominantCase> {};

TEST_P(DominantPastBlock, AgreesWithFloat64Reference) {
    MOBA_REQUIRE_GPU();
    const Problem p = dominant_problem(GetParam());
    const HostInputs in = dominant_inputs(p);
    const Selection sel = ref::gating(p, in).selection;
    // The inputs do what they are for: many rows past the reference, and many not. Counted with
    // a margin of 40, clear of the kernel's 32, so fp32 rounding of the scores cannot move a row.
    const int past = rows_past_reference(p, in, sel, 40.0);
    const int rows = static_cast<int>(p.total_tokens()) * p.heads_q;
    EXPECT_GT(past, rows / 20);
    EXPECT_LT(past, rows - rows / 20);
    CheckOptions options;
    const std::vector<std::string> names = moba_impls_for(p.head_dim);
    for (const auto& name : names) options.impls.push_back(&impl_named(name));
    options.add_zero_sparsity = false;
    const auto records = run_checks_on({p, 31}, in, options);
    EXPECT_EQ(records.size(), 6u * names.size());
    for (const auto& r : records) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
}

INSTANTIATE_TEST_SUITE_P(Moba, DominantPastBlock,
                         ::testing::Values(DominantCase{DType::bf16, 128, 4, 1}, DominantCase{DType::f16, 64, 4, 2}),
                         [](const ::testing::TestParamInfo<DominantCase>& param_info) {
                             const DominantCase& c = param_info.param;
                             return fmt::format("{}_D{}_{}", to_string(c.dtype), c.head_dim,
                                                head_layout(c.heads_q, c.heads_kv));
                         });

// Head passes (kernels/moba/head_passes.hpp): under a small accumulator budget the MoBA forward
// (wgmma_moba) and the backward (both entries, each its own kernels) run one range of kv heads after another, each in
// a smaller workspace. A pass changes which rows a launch covers, never a row's arithmetic, so
// every output must equal the one-pass run's bit for bit, with nothing written outside the
// outputs (the guard bands sit around the smaller workspace too). The dominant inputs take both
// merge paths of wgmma_moba's waves; a budget of 5 MiB on 3 kv heads makes passes of 2 and 1.
struct PassCase {
    DominantCase shape;
    const char* budget_mib;
    int kv_heads_per_pass;
};

class HeadPasses : public ::testing::TestWithParam<std::tuple<std::string, PassCase>> {};


TEST_P(HeadPasses, MatchOnePassBitwise) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named(std::get<0>(GetParam()));
    const PassCase& c = std::get<1>(GetParam());
    const Problem p = dominant_problem(c.shape);
    const HostInputs in = dominant_inputs(p);
    DeviceInputs din(impl, p, in);
    const Selection sel = run_gating(impl, din);
    // The workspaces that hold a pass: the backward's (each entry's own) and wgmma_moba's
    // forward's; tiled_mma's own forward runs one pass, and the registry's size is the larger of
    // the two.
    const bool forward_passes = impl.name == "wgmma_moba";
    const auto backward_bytes = [&] {
        return forward_passes ? wgmma::moba_backward_workspace_bytes(p) : tiled_mma::backward_workspace_bytes(p);
    };
    AttentionRun one;
    std::size_t one_pass_backward = 0;
    std::size_t one_pass_forward = 0;
    {
        const ScopedEnv env("MOBA_ACCUMULATOR_BUDGET_MIB", nullptr);
        ASSERT_EQ(sparse::kv_heads_per_pass(p), p.heads_kv);
        one_pass_backward = backward_bytes();
        if (forward_passes) one_pass_forward = wgmma::moba_workspace_bytes(p);
        one = run_attention(impl, din, sel, true);
        ASSERT_TRUE(one.stray_writes.empty()) << fmt::format("{}", fmt::join(one.stray_writes, "\n"));
    }
    AttentionRun split;
    {
        const ScopedEnv env("MOBA_ACCUMULATOR_BUDGET_MIB", c.budget_mib);
        ASSERT_EQ(sparse::kv_heads_per_pass(p), c.kv_heads_per_pass);
        EXPECT_LT(backward_bytes(), one_pass_backward);
        if (forward_passes) {
            EXPECT_LT(wgmma::moba_workspace_bytes(p), one_pass_forward);
        }
        split = run_attention(impl, din, sel, true);
        EXPECT_TRUE(split.stray_writes.empty()) << fmt::format("{}", fmt::join(split.stray_writes, "\n"));
    }
    EXPECT_TRUE(same_bits(split.forward.out, one.forward.out));
    EXPECT_TRUE(same_bits(split.forward.lse, one.forward.lse));
    EXPECT_TRUE(same_bits(split.gradients.dq, one.gradients.dq));
    EXPECT_TRUE(same_bits(split.gradients.dk, one.gradients.dk));
    EXPECT_TRUE(same_bits(split.gradients.dv, one.gradients.dv));
}

INSTANTIATE_TEST_SUITE_P(
    Moba, HeadPasses,
    ::testing::Combine(::testing::ValuesIn(kMobaImpls),
                       ::testing::Values(PassCase{DominantCase{DType::bf16, 128, 6, 3}, "5", 2},
                                         PassCase{DominantCase{DType::f16, 64, 4, 4}, "1", 1},
                                         PassCase{DominantCase{DType::f16, 128, 8, 2}, "1", 1})),
    [](const ::testing::TestParamInfo<std::tuple<std::string, PassCase>>& param_info) {
        const DominantCase& c = std::get<1>(param_info.param).shape;
        return fmt::format("{}_{}_D{}_{}", std::get<0>(param_info.param), to_string(c.dtype), c.head_dim,
                           head_layout(c.heads_q, c.heads_kv));
    });

// The atomic entry's backward in head passes: each pass zeroes the accumulator and adds its own
// query heads' rows at their offset in it (acc_head0), so a wrong offset or a missed zeroing
// shows in dq. dk, dv (fixed order, pass-independent) bitwise against one pass; dq within a
// rounding step of it and agreeing with the float64 reference; nothing written outside.
TEST(MobaAtomicHeadPasses, DkDvBitwiseDqAgrees) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named(kAtomicImpl);
    const Problem p = dominant_problem(DominantCase{DType::bf16, 128, 6, 3});
    const HostInputs in = dominant_inputs(p);
    DeviceInputs din(impl, p, in);
    const Selection sel = run_gating(impl, din);
    AttentionRun one;
    {
        const ScopedEnv env("MOBA_ACCUMULATOR_BUDGET_MIB", nullptr);
        one = run_attention(impl, din, sel, true);
        ASSERT_TRUE(one.stray_writes.empty()) << fmt::format("{}", fmt::join(one.stray_writes, "\n"));
    }
    const ScopedEnv env("MOBA_ACCUMULATOR_BUDGET_MIB", "5");
    ASSERT_EQ(sparse::kv_heads_per_pass(p), 2);  // passes of 2 and 1 kv heads
    const AttentionRun split = run_attention(impl, din, sel, true);
    EXPECT_TRUE(split.stray_writes.empty()) << fmt::format("{}", fmt::join(split.stray_writes, "\n"));
    EXPECT_TRUE(same_bits(split.gradients.dk, one.gradients.dk));
    EXPECT_TRUE(same_bits(split.gradients.dv, one.gradients.dv));
    expect_dq_within_rounding(split.gradients.dq, one.gradients.dq, "passes");
    CheckOptions options;
    options.impls = {&impl};
    options.add_zero_sparsity = false;
    const auto records = run_checks_on({p, 31}, in, options);
    EXPECT_EQ(records.size(), 6u);
    for (const auto& r : records) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
}

// The fused gating (tiled_mma's, which wgmma_moba uses too) scores tiles of 64 block means; the
// quick and long suites have at most 64 blocks per sequence, hence one tile. These cases run
// several tiles (lists that fill, then filter; the half floor) against the float64 reference:
// varlen with a 1-token sequence, GQA and MQA, each selection kernel (k - 1 <= 8: top8, 12 warps,
// at both head dims and a group of 3 whose tiles hold 128 tokens; 16: top16; 19: top64).
struct GatingCase {
    DType dtype;
    int head_dim;
    int heads_q;
    int heads_kv;
    int topk;
    std::vector<int> seqlens;
};

Problem gating_problem(const GatingCase& c) {
    Problem p;
    p.seqlens = c.seqlens;
    p.heads_q = c.heads_q;
    p.heads_kv = c.heads_kv;
    p.head_dim = c.head_dim;
    p.dtype = c.dtype;
    p.block = 32;
    p.topk = c.topk;
    return p;
}

class FusedGating : public ::testing::TestWithParam<GatingCase> {};

TEST_P(FusedGating, AgreesWithReferenceOverManyBlockTiles) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named("tiled_mma");
    const Problem p = gating_problem(GetParam());
    ASSERT_GT(p.max_blocks(), 4 * 64);  // rows score more than four tiles of block means
    const HostInputs in = make_inputs(p, 21);
    DeviceInputs din(impl, p, in);
    const GatingCheck check = compare_gating(p, run_gating(impl, din), ref::gating(p, in), in);
    EXPECT_EQ(check.outcome, Outcome::passed) << check.reason;
    EXPECT_EQ(check.mismatches, 0);
    EXPECT_EQ(check.invalid, 0);
}

// Equal keys make every block mean, hence every score, equal: SEMANTICS.md §2 gives ties to the lower
// block, so every row takes blocks 0 .. k-2 and its own.
TEST_P(FusedGating, EqualScoresTakeTheLowestBlocks) {
    MOBA_REQUIRE_GPU();
    const Implementation& impl = impl_named("tiled_mma");
    const Problem p = gating_problem(GetParam());
    HostInputs in = make_inputs(p, 22);
    std::fill(in.k.begin(), in.k.end(), 0.5f);
    DeviceInputs din(impl, p, in);
    const Selection got = run_gating(impl, din);
    const Selection want = ref::gating(p, in).selection;
    ASSERT_EQ(got.slots, want.slots);
    EXPECT_EQ(got.blocks, want.blocks);
}

INSTANTIATE_TEST_SUITE_P(
    Gating, FusedGating,
    // k - 1 <= 8 keeps each row's list in registers (k 2: seven pad entries, k 9: none), larger
    // k a shared-memory list of 16 or 64 entries.
    ::testing::Values(GatingCase{DType::bf16, 128, 8, 2, 8, {12000, 1, 3001}},
                      GatingCase{DType::bf16, 128, 4, 1, 2, {9000}},
                      GatingCase{DType::f16, 128, 2, 2, 9, {9000, 40}},
                      GatingCase{DType::bf16, 64, 3, 1, 4, {9000, 5}},
                      GatingCase{DType::f16, 64, 4, 1, 17, {9000, 700}},
                      GatingCase{DType::bf16, 64, 4, 4, 20, {9000, 33}}),
    [](const ::testing::TestParamInfo<GatingCase>& param_info) {
        const GatingCase& c = param_info.param;
        return fmt::format("{}_D{}_{}_k{}", to_string(c.dtype), c.head_dim, head_layout(c.heads_q, c.heads_kv),
                           c.topk);
    });

}  // namespace
}  // namespace moba
