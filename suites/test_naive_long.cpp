// Long GPU tests of the naive implementation: sizes the quick label would not wait for.
#include <chrono>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "gpu_test_util.hpp"
#include "harness/gpu_run.hpp"
#include "harness/inputs.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

const Implementation& naive() { return *find_implementation("naive"); }

// The forward at 64K tokens x 16 heads x D 128 must take seconds, not minutes (full causal,
// the naive path's worst case).
TEST(NaiveGpuLong, Forward64KFullCausalInSeconds) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {65536};
    p.heads_q = p.heads_kv = 16;
    p.head_dim = 128;
    p.block = 4096;
    p.topk = 16;  // >= n: every block, full causal attention
    p.dtype = DType::bf16;
    const HostInputs in = make_inputs(p, 14);
    DeviceInputs din(naive(), p, in);
    const Selection sel = ref::full_selection(p);
    const auto t0 = std::chrono::steady_clock::now();
    const AttentionRun run = run_attention(naive(), din, sel, false);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("naive forward, 64K x 16 heads x D128 full causal: %.2f s\n", secs);
    EXPECT_LT(secs, 30.0);
    for (float x : run.forward.lse) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace moba
