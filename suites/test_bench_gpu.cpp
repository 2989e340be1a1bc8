// moba bench on the GPU: every registered implementation is checked on sampled rows before it
// is timed; a wrong implementation is not timed; the records carry what dashboards need.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/bench.hpp"
#include "core/cuda_check.hpp"

namespace moba {
namespace {

CheckCase small_state() {
    Problem p;
    p.seqlens = {2048, 300};
    p.heads_q = 4;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 256;
    p.topk = 3;
    p.dtype = DType::bf16;
    return {p, 5};
}

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
    for (const auto& impl : registry()) o.impls.push_back(&impl);
    const auto records = run_bench(small_state(), o);
    ASSERT_EQ(records.size(), registry().size() * 2);
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
    }
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
