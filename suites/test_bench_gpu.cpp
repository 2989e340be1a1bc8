// moba bench on the GPU: every registered implementation is checked on sampled rows before it
// is timed; a wrong implementation is not timed; the records carry what dashboards need.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/bench.hpp"
#include "core/cuda_check.hpp"

namespace moba {
namespace {

// bf16, D 128, top-k 3.
CheckCase bf16_state(std::vector<int> seqlens, int heads_q, int heads_kv, int block, std::uint64_t seed) {
    Problem p;
    p.seqlens = std::move(seqlens);
    p.heads_q = heads_q;
    p.heads_kv = heads_kv;
    p.head_dim = 128;
    p.block = block;
    p.topk = 3;
    p.dtype = DType::bf16;
    return {p, seed};
}

CheckCase small_state() { return bf16_state({2048, 300}, 4, 2, 256, 5); }

BenchOptions quick_options() {
    BenchOptions o;
    o.timing.min_samples = 3;
    o.timing.max_samples = 5;
    o.timing.max_seconds = 1;
    o.phases = {Phase::fwd, Phase::fwdbwd};
    return o;
}

TEST(BenchGpu, EveryImplementationIsCheckedThenTimed) {
    MOBA_REQUIRE_GPU();
    BenchOptions o = quick_options();
    for (const auto& impl : registry())
        if (impl.has_forward()) o.impls.push_back(&impl);
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), o.impls.size() * 2);
    for (const auto& r : records) {
        SCOPED_TRACE(r.dump());
        EXPECT_EQ(r["outcome"], "passed");
        EXPECT_EQ(r["check_outcome"], "passed");
        EXPECT_GT(r["timing"]["median_ms"].get<double>(), 0.0);
        EXPECT_GE(r["timing"]["samples"].get<int>(), 3);
        EXPECT_GT(r["tflops"].get<double>(), 0.0);
        EXPECT_TRUE(r["speedup_vs_dense"].is_number());  // two dense implementations ran
        EXPECT_GT(r["peak_memory_bytes"].get<double>(), 0.0);
        EXPECT_NE(r["command"].get<std::string>().find("moba bench"), std::string::npos);
        if (r["dense"].get<bool>()) EXPECT_DOUBLE_EQ(r["ideal_speedup"].get<double>(), 1.0);
        else EXPECT_GT(r["ideal_speedup"].get<double>(), 1.0);
        // What was checked is recorded: the implementation's own gating on the sampled rows,
        // and for fwdbwd the backward on sampled query and key rows.
        EXPECT_EQ(r["check_selection"], r["dense"].get<bool>() ? "full_causal" : "own");
        if (!r["dense"].get<bool>()) {
            EXPECT_EQ(r["gating_check"]["outcome"], "passed");
            EXPECT_GT(r["gating_check"]["rows"].get<int>(), 0);
        }
        if (r["phase"] == "fwdbwd") {
            EXPECT_EQ(r["backward_check"]["outcome"], "passed");
            EXPECT_GT(r["backward_check"]["query_rows"].get<int>(), 0);
            EXPECT_GT(r["backward_check"]["key_rows"].get<int>(), 0);
        }
    }
}

// A state whose buffers are large enough (q 128 MiB) for free device memory to measure them to a
// few 2 MiB pages.
CheckCase large_state() { return bf16_state({65536}, 8, 2, 4096, 3); }

BenchOptions memory_options(const char* impl) {
    BenchOptions o = quick_options();
    o.phases = {Phase::fwdbwd};
    o.impls = {find_implementation(impl)};
    return o;
}

constexpr double kMiB = 1 << 20;

// Device memory is measured from free memory, inputs included (SEMANTICS.md §6): for the
// built-in kernels, which allocate nothing themselves, it is what the harness allocated to
// within a few pages, and MoBA's exceeds dense's by its workspace.
TEST(BenchGpu, MeasuredMemoryIsWhatTheRunHolds) {
    MOBA_REQUIRE_GPU();
    const Problem& p = large_state().problem;
    const double inputs = 2.0 * p.q_elems() * 2 + 2.0 * p.kv_elems() * 2;
    for (const char* name : {"wgmma_dense", "wgmma_moba"}) {
        const auto records = run_bench(large_state(), memory_options(name));
        ASSERT_EQ(records.size(), 1u);
        const auto& r = records[0];
        SCOPED_TRACE(r.dump());
        ASSERT_EQ(r["outcome"], "passed");
        const double measured = r["peak_memory_bytes"].get<double>();
        const double allocated = r["allocated_memory_bytes"].get<double>();
        // inputs, out, dq, dk, dv at least
        EXPECT_GT(allocated, inputs + 2.0 * p.q_elems() * 2 + 2.0 * p.kv_elems() * 2);
        EXPECT_GE(measured, allocated - 2 * kMiB);
        EXPECT_LE(measured, allocated + 64 * kMiB);
        EXPECT_FALSE(r.contains("memory_disturbed"));
    }
}

// What an implementation allocates itself and keeps is measured, though the harness never
// allocated it; release_memory gives it back before the next run.
TEST(BenchGpu, MemoryAnImplementationKeepsIsMeasured) {
    MOBA_REQUIRE_GPU();
    static void* kept = nullptr;
    constexpr std::size_t kKept = std::size_t{512} << 20;
    Implementation hoarder = *find_implementation("wgmma_dense");
    hoarder.name = "hoarding_dense";
    const auto forward = hoarder.forward;
    hoarder.forward = [forward](const AttentionArgs& a) {
        if (!kept) MOBA_CUDA_CALL(cudaMalloc(&kept, kKept));
        forward(a);
    };
    hoarder.release_memory = [] {
        if (kept) MOBA_CUDA_CALL(cudaFree(kept));
        kept = nullptr;
    };
    BenchOptions o = memory_options("wgmma_dense");
    o.impls.push_back(&hoarder);
    const auto records = run_bench(large_state(), o);
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(kept, nullptr);  // released after its run
    const auto& plain = records[0];
    const auto& hoarding = records[1];
    ASSERT_EQ(plain["outcome"], "passed") << plain.dump();
    ASSERT_EQ(hoarding["outcome"], "passed") << hoarding.dump();
    EXPECT_EQ(hoarding["allocated_memory_bytes"], plain["allocated_memory_bytes"]);
    const double extra = hoarding["peak_memory_bytes"].get<double>() - plain["peak_memory_bytes"].get<double>();
    EXPECT_GE(extra, kKept - 4 * kMiB);
    EXPECT_LE(extra, kKept + 4 * kMiB);
    // Taken during the checks (its first call), so held steadily while timed: not a disturbance.
    EXPECT_FALSE(hoarding.contains("memory_disturbed"));
}

// Free memory is device-wide (SEMANTICS.md §6): memory taken or given back by someone else while
// a run is timed must not pass as the run's. Both are played here from inside the timed loop: a
// forward that, from its second call on (the first timed one), takes 512 MiB, and one that frees
// 512 MiB held since before the run, as another process would.
TEST(BenchGpu, MemoryMovedByOthersDuringTheRunIsFlagged) {
    MOBA_REQUIRE_GPU();
    constexpr std::size_t kBytes = std::size_t{512} << 20;
    static void* held = nullptr;
    static int calls = 0;
    Implementation taker = *find_implementation("wgmma_dense");
    taker.name = "taking_dense";
    const auto forward = taker.forward;
    taker.forward = [forward](const AttentionArgs& a) {
        if (++calls == 2) MOBA_CUDA_CALL(cudaMalloc(&held, kBytes));
        forward(a);
    };
    BenchOptions o = memory_options("wgmma_dense");
    o.impls = {&taker};
    calls = 0;
    auto records = run_bench(large_state(), o);
    MOBA_CUDA_CALL(cudaFree(held));
    held = nullptr;
    ASSERT_EQ(records.size(), 1u);
    ASSERT_EQ(records[0]["outcome"], "passed") << records[0].dump();
    ASSERT_TRUE(records[0].contains("memory_disturbed")) << records[0].dump();
    EXPECT_NE(records[0]["memory_disturbed"].get<std::string>().find("fell by"), std::string::npos)
        << records[0]["memory_disturbed"];

    Implementation giver = *find_implementation("wgmma_dense");
    giver.name = "freeing_dense";
    const auto forward2 = giver.forward;
    giver.forward = [forward2](const AttentionArgs& a) {
        if (++calls == 2) {
            MOBA_CUDA_CALL(cudaFree(held));
            held = nullptr;
        }
        forward2(a);
    };
    calls = 0;
    MOBA_CUDA_CALL(cudaMalloc(&held, kBytes));
    o.impls = {&giver};
    records = run_bench(large_state(), o);
    ASSERT_EQ(held, nullptr);
    ASSERT_EQ(records.size(), 1u);
    ASSERT_EQ(records[0]["outcome"], "passed") << records[0].dump();
    ASSERT_TRUE(records[0].contains("memory_disturbed")) << records[0].dump();
    EXPECT_NE(records[0]["memory_disturbed"].get<std::string>().find("MiB less than the harness allocated"),
              std::string::npos)
        << records[0]["memory_disturbed"];
}

// The naive gating, then (from the `from`-th call on) one selection row changed to other
// valid past blocks: the last token of sequence 0 (own block 7), head 0.
void gating_then_change(const GatingArgs& g, int from, int& calls) {
    find_implementation("naive")->gating(g);
    if (++calls < from) return;
    MOBA_CUDA_CALL(cudaStreamSynchronize(g.stream));
    const int slots = g.problem.sel_slots();
    std::int32_t row[3];
    ASSERT_EQ(slots, 3);
    std::int32_t* at = g.sel + std::int64_t{2047} * g.problem.heads_q * slots;
    MOBA_CUDA_CALL(cudaMemcpy(row, at, sizeof row, cudaMemcpyDeviceToHost));
    const bool was_01 = row[0] == 0 && row[1] == 1;
    row[0] = 0;
    row[1] = was_01 ? 2 : 1;
    MOBA_CUDA_CALL(cudaMemcpy(at, row, sizeof row, cudaMemcpyHostToDevice));
}

// A gating whose selection is wrong on a sampled row (the last token of a sequence is always
// sampled) is caught before anything is timed.
TEST(BenchGpu, AWrongGatingIsNotTimed) {
    MOBA_REQUIRE_GPU();
    Implementation wrong = *find_implementation("naive");
    wrong.name = "wrong_gating";
    static int calls = 0;
    calls = 0;
    wrong.gating = [](const GatingArgs& g) { gating_then_change(g, 1, calls); };
    BenchOptions o = quick_options();
    o.impls = {&wrong};
    for (const auto& r : run_bench(small_state(), o)) {
        EXPECT_EQ(r["outcome"], "skipped") << r.dump();
        EXPECT_EQ(r["check_outcome"], "incorrect") << r.dump();
        EXPECT_EQ(r["gating_check"]["mismatches"], 1) << r.dump();
        EXPECT_FALSE(r.contains("timing"));
    }
}

// A gating that is right when checked and different later: the timed runs read another
// selection than the checked one, and the record says so.
TEST(BenchGpu, ANondeterministicGatingIsIncorrect) {
    MOBA_REQUIRE_GPU();
    Implementation flaky = *find_implementation("naive");
    flaky.name = "flaky_gating";
    static int calls = 0;
    calls = 0;
    flaky.gating = [](const GatingArgs& g) { gating_then_change(g, 2, calls); };
    BenchOptions o = quick_options();
    o.impls = {&flaky};
    o.phases = {Phase::fwd};
    o.gating = GatingMode::included;
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0]["outcome"], "incorrect") << records[0].dump();
    EXPECT_EQ(records[0]["check_outcome"], "incorrect");
    EXPECT_NE(records[0]["reason"].get<std::string>().find("nondeterministic gating"), std::string::npos);
    EXPECT_FALSE(records[0].contains("timing"));
}

// A wrong backward: the forward is timed, the phases that run backward are not.
TEST(BenchGpu, AWrongBackwardLeavesOnlyTheForwardTimed) {
    MOBA_REQUIRE_GPU();
    Implementation wrong = *find_implementation("naive");
    wrong.name = "wrong_backward";
    wrong.backward = [](const AttentionArgs& a) {
        AttentionArgs b = a;
        b.problem.softmax_scale = 1.1 * a.problem.scale();
        find_implementation("naive")->backward(b);
    };
    BenchOptions o = quick_options();
    o.impls = {&wrong};
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0]["phase"], "fwd");
    EXPECT_EQ(records[0]["outcome"], "passed") << records[0].dump();
    EXPECT_EQ(records[1]["phase"], "fwdbwd");
    EXPECT_EQ(records[1]["outcome"], "skipped") << records[1].dump();
    EXPECT_EQ(records[1]["check_outcome"], "incorrect");
    EXPECT_EQ(records[1]["backward_check"]["outcome"], "incorrect");
    EXPECT_FALSE(records[1].contains("timing"));
}

TEST(BenchGpu, AWrongImplementationIsNotTimed) {
    MOBA_REQUIRE_GPU();
    Implementation wrong = *find_implementation("naive");
    wrong.name = "scaled_wrong";
    wrong.forward = [](const AttentionArgs& a) {
        AttentionArgs b = a;
        b.problem.softmax_scale = 1.1 * a.problem.scale();  // a plausible bug: the wrong softmax scale
        find_implementation("naive")->forward(b);
    };
    BenchOptions o = quick_options();
    o.impls = {&wrong};
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), 2u);
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "skipped") << r.dump();
        EXPECT_EQ(r["check_outcome"], "incorrect") << r.dump();
        EXPECT_FALSE(r.contains("timing"));
    }
}

// Each implementation's records are handed on as it finishes (moba bench writes them to disk
// then), so a run stopped in a state's later implementation keeps the earlier ones: the first
// hand-over holds the MoBA implementation's records alone, without a speedup (no dense one has
// run), the second both, with speedups, and the state's final records are the second's.
TEST(BenchGpu, EachImplementationsRecordsAreHandedOnAsItFinishes) {
    MOBA_REQUIRE_GPU();
    BenchOptions o = quick_options();
    o.impls = {find_implementation("naive"), find_implementation("naive_dense")};
    std::vector<std::vector<nlohmann::json>> handed;
    o.on_implementation_done = [&](const std::vector<nlohmann::json>& so_far) { handed.push_back(so_far); };
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(handed.size(), 2u);
    ASSERT_EQ(handed[0].size(), 2u);  // fwd, fwdbwd
    for (const auto& r : handed[0]) {
        EXPECT_EQ(r["impl"], "naive") << r.dump();
        EXPECT_EQ(r["outcome"], "passed") << r.dump();
        EXPECT_GT(r["timing"]["median_ms"].get<double>(), 0.0) << r.dump();
        EXPECT_TRUE(r["speedup_vs_dense"].is_null()) << r.dump();
    }
    ASSERT_EQ(handed[1].size(), 4u);
    ASSERT_EQ(records.size(), 4u);
    for (std::size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(handed[1][i], records[i]);
        EXPECT_TRUE(records[i]["speedup_vs_dense"].is_number()) << records[i].dump();
    }
}

// Right on the call that is checked, wrong on every later one (a kernel that keeps state between
// calls): its timed records are incorrect, with the reason, not passed with a time.
TEST(BenchGpu, AForwardWrongAfterItsCheckedCallIsNotPassed) {
    MOBA_REQUIRE_GPU();
    static int calls = 0;
    Implementation drifting = *find_implementation("naive");
    drifting.name = "drifting";
    drifting.forward = [](const AttentionArgs& a) {
        AttentionArgs b = a;
        if (++calls >= 2) b.problem.softmax_scale = 1.1 * a.problem.scale();
        find_implementation("naive")->forward(b);
    };
    BenchOptions o = quick_options();
    o.impls = {&drifting};
    calls = 0;
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), 2u);
    for (const auto& r : records) {
        EXPECT_EQ(r["outcome"], "incorrect") << r.dump();
        EXPECT_EQ(r["check_outcome"], "incorrect") << r.dump();
        EXPECT_EQ(r["reason"].get<std::string>().rfind("after timing, the last timed call's forward check on", 0), 0u)
            << r.dump();
    }
    EXPECT_GT(calls, 2);

    // The same for a backward: the forward phase passes, the timed forward+backward does not.
    static int backwards = 0;
    Implementation drifting_bwd = *find_implementation("naive");
    drifting_bwd.name = "drifting_backward";
    drifting_bwd.backward = [](const AttentionArgs& a) {
        AttentionArgs b = a;
        if (++backwards >= 2) b.problem.softmax_scale = 1.1 * a.problem.scale();
        find_implementation("naive")->backward(b);
    };
    o.impls = {&drifting_bwd};
    backwards = 0;
    const auto bwd_records = run_bench(small_state(), o);
    ASSERT_EQ(bwd_records.size(), 2u);
    EXPECT_EQ(bwd_records[0]["phase"], "fwd");
    EXPECT_EQ(bwd_records[0]["outcome"], "passed") << bwd_records[0].dump();
    EXPECT_EQ(bwd_records[1]["outcome"], "incorrect") << bwd_records[1].dump();
    EXPECT_EQ(bwd_records[1]["reason"].get<std::string>().rfind("after timing, the last timed call's backward check on", 0),
              0u)
        << bwd_records[1].dump();
}

TEST(BenchGpu, UnsupportedShapesAreRecordedNotRun) {
    MOBA_REQUIRE_GPU();
    CheckCase s = small_state();
    s.problem.dtype = DType::f32;  // dense_cublas implements bf16 and fp16 only
    BenchOptions o = quick_options();
    o.impls = {find_implementation("dense_cublas")};
    for (const auto& r : run_bench(s, o)) {
        EXPECT_EQ(r["outcome"], "not supported") << r.dump();
        EXPECT_NE(r["reason"].get<std::string>().find("fp32"), std::string::npos) << r.dump();
    }
}

}  // namespace
}  // namespace moba
