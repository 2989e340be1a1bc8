// The naive GPU implementation against the float64 reference across the quick matrix, plus
// the harness's own guarantees on the GPU: poisoned outputs are caught, the forward and the
// gathered backward are bitwise deterministic, bad shapes are refused. Skips without a GPU.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/check.hpp"
#include "harness/compare.hpp"
#include "core/cuda_check.hpp"
#include "harness/gpu_run.hpp"
#include "harness/inputs.hpp"
#include "harness/naive_baseline.hpp"
#include "harness/suite.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

const Implementation& naive() { return *find_implementation("naive"); }

// ---- naive across the quick matrix ------------------------------------------------------
class NaiveQuickMatrix : public ::testing::TestWithParam<CheckCase> {};

TEST_P(NaiveQuickMatrix, AgreesWithFloat64Reference) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    options.impls = {&naive()};
    options.add_zero_sparsity = false;
    const auto records = run_checks(GetParam(), options);
    // gating + out + lse + dq + dk + dv
    EXPECT_EQ(records.size(), 6u);
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
        EXPECT_EQ(r["impl"], "naive") << r.dump(1);
    }
}

std::string case_name(const ::testing::TestParamInfo<CheckCase>& info) {
    const Problem& p = info.param.problem;
    return fmt::format("{}_{}_D{}_L{}_k{}_{}", head_layout(p.heads_q, p.heads_kv), to_string(p.dtype),
                       p.head_dim, fmt::join(p.seqlens, "_"), p.topk, info.index);
}

INSTANTIATE_TEST_SUITE_P(Quick, NaiveQuickMatrix, ::testing::ValuesIn(quick_suite(1000)), case_name);

// ---- harness guarantees on the GPU ---------------------------------------------------------
Problem small_problem(DType dtype = DType::bf16) {
    Problem p;
    p.seqlens = {300, 45, 1};
    p.heads_q = 4;
    p.heads_kv = 2;
    p.head_dim = 64;
    p.block = 32;
    p.topk = 3;
    p.dtype = dtype;
    return p;
}

// An implementation that writes only the first half of its output: the poisoned second half
// must be reported as failed, not read as whatever was in memory.
TEST(NaiveGpu, PoisonedOutputsAreCaught) {
    MOBA_REQUIRE_GPU();
    const Problem p = small_problem();
    const HostInputs in = make_inputs(p, 7);
    Implementation half = naive();
    half.name = "half_writer";
    half.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        const std::size_t half_bytes = static_cast<std::size_t>(a.problem.q_elems()) * 2 / 2;
        MOBA_CUDA_CALL(cudaMemset(static_cast<char*>(a.out) + half_bytes, 0xFF, half_bytes));
    };
    DeviceInputs din(half, p, in);
    const Selection sel = ref::gating(p, in).selection;
    const AttentionRun run = run_attention(half, din, sel, false);
    const auto truth = ref::attention_forward(p, in, sel);
    const auto base = ref::baseline_forward(p, in, sel);
    const TensorCheck c = compare_tensor("out", run.forward.out, truth.out, base.out, kForwardFactor,
                                         tensor_atol(p.dtype));
    EXPECT_EQ(c.outcome, Outcome::failed);
    EXPECT_EQ(c.nonfinite, p.q_elems() / 2);
}

// An implementation that writes nothing: every output element stays poisoned.
TEST(NaiveGpu, UnwrittenOutputsFail) {
    MOBA_REQUIRE_GPU();
    const Problem p = small_problem(DType::f16);
    const HostInputs in = make_inputs(p, 8);
    Implementation idle = naive();
    idle.name = "idle";
    idle.forward = [](const AttentionArgs&) {};
    DeviceInputs din(idle, p, in);
    const Selection sel = ref::gating(p, in).selection;
    const AttentionRun run = run_attention(idle, din, sel, false);
    for (float x : run.forward.out) ASSERT_TRUE(std::isnan(x));
    for (float x : run.forward.lse) ASSERT_TRUE(std::isnan(x));
}

// Planted bugs that agree with float64 everywhere they are judged, each caught as an incorrect
// `bounds` record (SEMANTICS.md §5): a row written past the end of out, a float before lse, a
// gating that spills past the selection, a backward that scribbles on q. A correct run adds no
// such record (the quick matrix above counts its records).
TEST(NaiveGpu, WritesOutsideTheOutputsAreCaught) {
    MOBA_REQUIRE_GPU();
    const CheckCase c{small_problem(), 7};
    Implementation stray = naive();
    stray.name = "stray_writer";
    stray.gating = [](const GatingArgs& g) {
        naive().gating(g);
        MOBA_CUDA_CALL(cudaMemsetAsync(g.sel + g.problem.sel_elems(), 0, 4, g.stream));  // one entry past the end
    };
    stray.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        const std::size_t row = static_cast<std::size_t>(a.problem.heads_q) * a.problem.head_dim * 2;
        MOBA_CUDA_CALL(cudaMemsetAsync(static_cast<char*>(a.out) + a.problem.q_elems() * 2, 0, row, a.stream));  // the token after the last
        MOBA_CUDA_CALL(cudaMemsetAsync(a.lse - 1, 0, 4, a.stream));                                             // the float before the first
    };
    stray.backward = [](const AttentionArgs& a) {
        naive().backward(a);
        MOBA_CUDA_CALL(cudaMemsetAsync(const_cast<void*>(a.q), 0, 2, a.stream));  // an input
    };
    CheckOptions options;
    options.impls = {&stray};
    options.add_zero_sparsity = false;
    const auto records = run_checks(c, options);
    std::vector<std::string> bounds;
    for (const auto& r : records) {
        if (r["check"] == "bounds") {
            EXPECT_EQ(r["outcome"], "incorrect") << r.dump(1);
            bounds.push_back(r["reason"].get<std::string>());
        } else {
            EXPECT_EQ(r["outcome"], "passed") << r.dump(1);  // the values themselves are right
        }
    }
    const std::string all = fmt::format("{}", fmt::join(bounds, "\n"));
    EXPECT_NE(all.find("gating: 4 bytes written past the end of the selection (first at byte +0"), std::string::npos) << all;
    EXPECT_NE(all.find(fmt::format("forward: {} bytes written past the end of out (first at byte +0",
                                   c.problem.heads_q * c.problem.head_dim * 2)),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("forward: 4 bytes written before the start of lse (nearest at byte -1)"), std::string::npos) << all;
    EXPECT_NE(all.find("backward: q changed: "), std::string::npos) << all;
    // The gating runs twice (SEMANTICS.md §5) and its second call writes past the selection
    // again: reported as the second call's. The backward changed q, so the second forward and
    // backward do not run (they would read other inputs than the checked ones).
    EXPECT_NE(all.find("the second gating: 4 bytes written past the end of the selection (first at byte +0"),
              std::string::npos)
        << all;
    EXPECT_EQ(all.find("the second forward"), std::string::npos) << all;
    // Each call's write reported once, by the call that made it.
    EXPECT_EQ(bounds.size(), 5u) << all;
}

// Plants right on their first call and wrong from the second on, as a kernel that keeps state
// between calls is (SEMANTICS.md §5: every call is judged): a gating that adds a block to token
// 0's selection, a forward that zeroes out's first row. Each is caught, the first call's records
// pass, and every added record says it was the second call.
TEST(NaiveGpu, ASecondCallThatGoesWrongIsCaught) {
    MOBA_REQUIRE_GPU();
    static int gatings = 0, forwards = 0;
    Implementation stale = naive();
    stale.name = "stale_state";
    stale.gating = [](const GatingArgs& g) {
        naive().gating(g);
        if (++gatings >= 2) MOBA_CUDA_CALL(cudaMemsetAsync(g.sel + 1, 0, 4, g.stream));  // token 0, head 0: [0, -1, -1] -> [0, 0, -1]
    };
    stale.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        if (++forwards >= 2)
            MOBA_CUDA_CALL(cudaMemsetAsync(a.out, 0, static_cast<std::size_t>(a.problem.heads_q) * a.problem.head_dim * 2, a.stream));
    };
    CheckOptions options;
    options.impls = {&stale};
    options.add_zero_sparsity = false;
    const auto records = run_checks(CheckCase{small_problem(), 9}, options);
    ASSERT_EQ(gatings, 2);
    ASSERT_EQ(forwards, 2);
    int first_calls = 0;
    bool gating_caught = false, out_caught = false;
    for (const auto& r : records) {
        const std::string reason = r["reason"];
        if (r["outcome"] == "passed") {
            ++first_calls;
            continue;
        }
        EXPECT_EQ(r["outcome"], "incorrect") << r.dump(1);
        if (r["check"] == "gating") {
            EXPECT_NE(reason.find("a second call on the same workspace wrote another selection: 1 of"), std::string::npos)
                << reason;
            gating_caught = true;
        } else {
            EXPECT_EQ(reason.rfind("on the second call (the same workspace, after a forward and a backward; on a non-blocking stream held ", 0), 0u)
                << reason;
            if (r["tensor"] == "out") out_caught = true;
        }
    }
    EXPECT_EQ(first_calls, 6);  // gating, out, lse, dq, dk, dv of the first calls
    EXPECT_TRUE(gating_caught);
    EXPECT_TRUE(out_caught);

    // --once: the first calls alone, nothing added.
    gatings = forwards = 0;
    options.call_twice = false;
    for (const auto& r : run_checks(CheckCase{small_problem(), 9}, options)) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
    EXPECT_EQ(forwards, 1);
}

// A forward right when all kv heads run in one head pass and wrong when they run one per pass (as
// a kernel whose later passes take the wrong head offset is): the default budget makes one pass
// at every check size, so only the second calls, which run with MOBA_ACCUMULATOR_BUDGET_MIB=0
// (harness/gpu_run.hpp), reach it. Caught there and said so; with one kv head the variable is
// left alone.
TEST(NaiveGpu, AWrongLaterHeadPassIsCaughtOnTheSecondCall) {
    MOBA_REQUIRE_GPU();
    static std::vector<std::string> budgets;  // what each forward call saw
    Implementation passes = naive();
    passes.name = "wrong_later_pass";
    passes.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        const char* budget = std::getenv("MOBA_ACCUMULATOR_BUDGET_MIB");
        budgets.emplace_back(budget != nullptr ? budget : "unset");
        if (budgets.back() == "0")  // the last kv head's query heads of token 0 zeroed
            MOBA_CUDA_CALL(cudaMemsetAsync(static_cast<char*>(a.out) + static_cast<std::size_t>(a.problem.heads_q - a.problem.group()) * a.problem.head_dim * 2,
                                           0, static_cast<std::size_t>(a.problem.group()) * a.problem.head_dim * 2, a.stream));
    };
    CheckOptions options;
    options.impls = {&passes};
    options.add_zero_sparsity = false;
    ASSERT_EQ(std::getenv("MOBA_ACCUMULATOR_BUDGET_MIB"), nullptr) << "the test needs the default budget";
    const auto records = run_checks(CheckCase{small_problem(), 9}, options);  // 2 kv heads
    EXPECT_EQ(budgets, (std::vector<std::string>{"unset", "0"}));
    EXPECT_EQ(std::getenv("MOBA_ACCUMULATOR_BUDGET_MIB"), nullptr) << "restored after the second calls";
    bool out_caught = false;
    for (const auto& r : records) {
        if (r["outcome"] == "passed") continue;
        EXPECT_EQ(r["outcome"], "incorrect") << r.dump(1);
        const std::string reason = r["reason"];
        EXPECT_NE(reason.find("with MOBA_ACCUMULATOR_BUDGET_MIB=0, one kv head per head pass"), std::string::npos) << reason;
        if (r["tensor"] == "out") out_caught = true;
    }
    EXPECT_TRUE(out_caught);

    budgets.clear();
    Problem mqa = small_problem();
    mqa.heads_kv = 1;
    for (const auto& r : run_checks(CheckCase{mqa, 9}, options)) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
    EXPECT_EQ(budgets, (std::vector<std::string>{"unset", "unset"}));
}

// A backward that reads what its forward left in the workspace (the lse it stashed there)
// instead of its input lse: right whenever the workspace survives from forward to backward
// untouched, which no framework promises. moba check poisons the workspace before the first
// backward (SEMANTICS.md §5), so the first call's gradients are caught, with or without --once;
// the gating and the forward pass. On the second calls the stash is the second forward's, so
// nothing is added there.
std::size_t naive_workspace_end(const Problem& p) { return (naive().attention_workspace_bytes(p) + 255) / 256 * 256; }

TEST(NaiveGpu, ABackwardReadingWhatItsForwardLeftIsCaught) {
    MOBA_REQUIRE_GPU();
    Implementation stash = naive();
    stash.name = "stashes_lse";
    stash.attention_workspace_bytes = [](const Problem& p) {
        return naive_workspace_end(p) + static_cast<std::size_t>(p.lse_elems()) * sizeof(float);
    };
    stash.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        void* kept = static_cast<char*>(a.workspace) + naive_workspace_end(a.problem);
        MOBA_CUDA_CALL(cudaMemcpyAsync(kept, a.lse, static_cast<std::size_t>(a.problem.lse_elems()) * sizeof(float),
                                       cudaMemcpyDeviceToDevice, a.stream));
    };
    stash.backward = [](const AttentionArgs& a) {
        AttentionArgs b = a;
        b.lse = reinterpret_cast<float*>(static_cast<char*>(a.workspace) + naive_workspace_end(a.problem));
        naive().backward(b);
    };
    CheckOptions options;
    options.impls = {&stash};
    options.add_zero_sparsity = false;
    for (bool twice : {true, false}) {
        options.call_twice = twice;
        std::set<std::string> passed, caught;
        for (const auto& r : run_checks(CheckCase{small_problem(), 13}, options)) {
            const std::string what = r["tensor"].get<std::string>().empty() ? r["check"].get<std::string>()
                                                                            : r["tensor"].get<std::string>();
            if (r["outcome"] == "passed") {
                passed.insert(what);
                continue;
            }
            EXPECT_TRUE(r["outcome"] == "incorrect" || r["outcome"] == "failed") << r.dump(1);
            const std::string reason = r["reason"];
            EXPECT_NE(reason.rfind("on the second call", 0), 0u) << "caught only on the second call: " << reason;
            caught.insert(what);
        }
        // The gating's record compares tensor "selection".
        for (const char* what : {"selection", "out", "lse"}) EXPECT_TRUE(passed.count(what)) << what << (twice ? "" : " (--once)");
        for (const char* what : {"dq", "dk", "dv"}) EXPECT_TRUE(caught.count(what)) << what << (twice ? "" : " (--once)");
    }
}

// A forward that writes past the end of out on its second call only (as one whose addresses come
// from state kept between calls would): the guards are re-armed before each second call and read
// after it, so the write is a bounds record naming the second forward; --once has none.
TEST(NaiveGpu, AWriteOutsideTheOutputsOnASecondCallIsCaught) {
    MOBA_REQUIRE_GPU();
    static int forwards = 0;
    Implementation stray = naive();
    stray.name = "strays_on_its_second_call";
    stray.forward = [](const AttentionArgs& a) {
        naive().forward(a);
        if (++forwards == 2) {
            const std::size_t out_bytes = static_cast<std::size_t>(a.problem.q_elems()) * dtype_bytes(a.problem.dtype);
            MOBA_CUDA_CALL(cudaMemsetAsync(static_cast<char*>(a.out) + out_bytes, 0, 16, a.stream));
        }
    };
    CheckOptions options;
    options.impls = {&stray};
    options.add_zero_sparsity = false;
    for (bool twice : {true, false}) {
        forwards = 0;
        options.call_twice = twice;
        int bounds = 0;
        for (const auto& r : run_checks(CheckCase{small_problem(), 17}, options)) {
            if (r["check"] != "bounds") {
                EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
                continue;
            }
            ++bounds;
            const std::string reason = r["reason"];
            EXPECT_EQ(reason.rfind("the second forward: 16 bytes written past the end of out", 0), 0u) << reason;
        }
        EXPECT_EQ(bounds, twice ? 1 : 0);
        EXPECT_EQ(forwards, twice ? 2 : 1);
    }
}

// An implementation right in every value that launches on the legacy default stream instead of
// args.stream (as a kernel that ignores the stream a PyTorch side stream hands it does). Its
// first calls pass; on the second calls' held non-blocking stream its work finishes before the
// poisoning queued there, so the gating's selection, out, lse and the gradients come back
// poisoned and each is caught, saying which call and on what stream.
TEST(NaiveGpu, WorkLaunchedOnAnotherStreamIsCaught) {
    MOBA_REQUIRE_GPU();
    Implementation elsewhere = naive();
    elsewhere.name = "ignores_its_stream";
    elsewhere.gating = [](const GatingArgs& g) {
        GatingArgs on_default = g;
        on_default.stream = nullptr;
        naive().gating(on_default);
    };
    elsewhere.forward = [](const AttentionArgs& a) {
        AttentionArgs on_default = a;
        on_default.stream = nullptr;
        naive().forward(on_default);
    };
    elsewhere.backward = [](const AttentionArgs& a) {
        AttentionArgs on_default = a;
        on_default.stream = nullptr;
        naive().backward(on_default);
    };
    CheckOptions options;
    options.impls = {&elsewhere};
    options.add_zero_sparsity = false;
    const auto records = run_checks(CheckCase{small_problem(), 5}, options);
    int passed = 0;
    std::set<std::string> caught;
    for (const auto& r : records) {
        if (r["outcome"] == "passed") {
            ++passed;
            continue;
        }
        EXPECT_TRUE(r["outcome"] == "incorrect" || r["outcome"] == "failed") << r.dump(1);
        const std::string reason = r["reason"];
        EXPECT_NE(reason.find("non-blocking stream held"), std::string::npos) << reason;
        caught.insert(r["tensor"].get<std::string>().empty() ? r["check"].get<std::string>() : r["tensor"].get<std::string>());
    }
    EXPECT_EQ(passed, 6);  // gating, out, lse, dq, dk, dv of the first calls (on the default stream)
    for (const char* what : {"gating", "out", "lse", "dq", "dk", "dv"}) EXPECT_TRUE(caught.count(what)) << what;

    // --once: the first calls alone, on the default stream, pass.
    options.call_twice = false;
    for (const auto& r : run_checks(CheckCase{small_problem(), 5}, options)) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
}

TEST(NaiveGpu, ForwardAndBackwardAreBitwiseDeterministic) {
    MOBA_REQUIRE_GPU();
    for (DType dtype : {DType::bf16, DType::f16, DType::f32}) {
        const Problem p = small_problem(dtype);
        const HostInputs in = make_inputs(p, 9);
        DeviceInputs din(naive(), p, in);
        const Selection sel = run_gating(naive(), din);
        EXPECT_EQ(run_gating(naive(), din).blocks, sel.blocks);
        const AttentionRun first = run_attention(naive(), din, sel, true);
        for (int repeat = 0; repeat < 5; ++repeat) {
            const AttentionRun again = run_attention(naive(), din, sel, true);
            // Compare bit patterns: NaN != NaN would hide nothing here, all values are finite.
            EXPECT_EQ(0, std::memcmp(again.forward.out.data(), first.forward.out.data(), first.forward.out.size() * 4));
            EXPECT_EQ(0, std::memcmp(again.forward.lse.data(), first.forward.lse.data(), first.forward.lse.size() * 4));
            EXPECT_EQ(0, std::memcmp(again.gradients.dq.data(), first.gradients.dq.data(), first.gradients.dq.size() * 4));
            EXPECT_EQ(0, std::memcmp(again.gradients.dk.data(), first.gradients.dk.data(), first.gradients.dk.size() * 4));
            EXPECT_EQ(0, std::memcmp(again.gradients.dv.data(), first.gradients.dv.data(), first.gradients.dv.size() * 4));
        }
    }
}

// --reference gpu's yardstick is SEMANTICS.md §5's baseline: the naive kernels with P and dS rounded
// to the dtype must land on the CPU baseline (reference/baseline.cpp) far nearer than the naive
// implementation itself does, which keeps P and dS in fp32 and rounds only its outputs. MQA at
// zero sparsity, so each key's dK/dV sums many (row, head) terms and the roundings show.
TEST(NaiveGpu, GpuBaselineMatchesTheCpuBaseline) {
    MOBA_REQUIRE_GPU();
    const auto distance = [](const std::vector<float>& a, const std::vector<float>& b) {
        double sum = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i)
            sum += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
        return std::sqrt(sum);
    };
    for (DType dtype : {DType::bf16, DType::f16}) {
        Problem p;
        p.seqlens = {1500, 77};
        p.heads_q = 8;
        p.heads_kv = 1;
        p.head_dim = 64;
        p.block = 64;
        p.topk = 100;  // >= every sequence's block count: full causal attention
        p.dtype = dtype;
        SCOPED_TRACE(to_string(dtype));
        const HostInputs in = make_inputs(p, 21);
        const Selection sel = ref::full_selection(p);
        const AttentionRun gpu = naive_baseline(p, in, sel);
        const ForwardOutput cpu_fwd = ref::baseline_forward(p, in, sel);
        const GradientOutput cpu_bwd = ref::baseline_backward(p, in, sel);
        DeviceInputs din(naive(), p, in);
        const AttentionRun plain = run_attention(naive(), din, sel, true);
        const GradientOutput& base = gpu.gradients;
        EXPECT_LT(distance(base.dv, cpu_bwd.dv), 0.5 * distance(plain.gradients.dv, cpu_bwd.dv));
        EXPECT_LT(distance(base.dk, cpu_bwd.dk), 0.5 * distance(plain.gradients.dk, cpu_bwd.dk));
        EXPECT_LE(distance(base.dq, cpu_bwd.dq), distance(plain.gradients.dq, cpu_bwd.dq));
        EXPECT_LE(distance(gpu.forward.out, cpu_fwd.out),
                  distance(plain.forward.out, cpu_fwd.out));
    }
}

TEST(NaiveGpu, Fp32InputsAgreeWithReference) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    options.impls = {&naive()};
    for (int d : {32, 96, 256}) {  // any head dim up to 256
        Problem p = small_problem(DType::f32);
        p.head_dim = d;
        for (const auto& r : run_checks({p, 11}, options)) EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
    }
}

TEST(NaiveGpu, UnsupportedHeadDimIsReportedNotRun) {
    MOBA_REQUIRE_GPU();
    Problem p = small_problem();
    p.head_dim = 320;
    CheckOptions options;
    options.impls = {&naive()};
    const auto records = run_checks({p, 12}, options);
    ASSERT_FALSE(records.empty());
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "not supported") << r.dump(1);
        EXPECT_NE(r["reason"].get<std::string>().find("320"), std::string::npos);
    }
}

TEST(NaiveGpu, LargerThanDeviceMemoryIsRefusedBeforeAllocating) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {1 << 30};  // 1G tokens x 64 heads x 256: terabytes
    p.heads_q = p.heads_kv = 64;
    p.head_dim = 256;
    p.block = 4096;
    p.topk = 4;
    const std::size_t before = device_memory().free_bytes;
    try {
        HostInputs none;  // never needed: the refusal comes first
        DeviceInputs din(naive(), p, none);
        ADD_FAILURE() << "no refusal";
    } catch (const OutOfDeviceMemory& e) {
        EXPECT_NE(std::string(e.what()).find("GiB"), std::string::npos) << e.what();
    }
    EXPECT_EQ(device_memory().free_bytes, before);
}

TEST(NaiveGpu, NaNInputsAreReportedAsFailed) {
    MOBA_REQUIRE_GPU();
    const Problem p = small_problem();
    HostInputs in = make_inputs(p, 13);
    in.k[17] = std::numeric_limits<float>::quiet_NaN();
    CheckOptions options;
    options.impls = {&naive()};
    const auto records = run_checks_on({p, 13}, in, options);
    ASSERT_FALSE(records.empty());
    for (const auto& r : records) EXPECT_EQ(r["outcome"], "failed") << r.dump(1);
    EXPECT_NE(records[0]["reason"].get<std::string>().find("input k"), std::string::npos);
}

}  // namespace
}  // namespace moba
