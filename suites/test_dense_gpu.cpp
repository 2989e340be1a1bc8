// The dense implementations (full causal attention whatever the selection) against float64
// full causal attention on every zero-sparsity case of the quick matrix, and their refusal
// of sparse problems. Skips without a GPU.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/check.hpp"
#include "harness/suite.hpp"

namespace moba {
namespace {

TEST(DenseGpu, ZeroSparsityCasesOfTheQuickMatrixPass) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    for (const auto& impl : registry())
        if (impl.dense && impl.has_forward()) options.impls.push_back(&impl);
    ASSERT_GE(options.impls.size(), 2u);
    options.add_zero_sparsity = false;
    int checked = 0;
    for (const CheckCase& c : quick_suite(2000)) {
        if (!c.problem.zero_sparsity()) continue;
        for (const auto& r : run_checks(c, options)) {
            SCOPED_TRACE(r.dump());
            EXPECT_NE(r["check"], "gating");  // dense implementations have no gating
            if (r["outcome"] == "not supported") continue;  // e.g. a head dim the kernel lacks
            EXPECT_EQ(r["outcome"], "passed");
            ++checked;
        }
    }
    EXPECT_GT(checked, 0);
}

TEST(DenseGpu, SparseProblemsAreNotSupported) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {300};
    p.heads_q = p.heads_kv = 2;
    p.head_dim = 64;
    p.block = 32;
    p.topk = 2;
    CheckOptions options;
    options.add_zero_sparsity = false;
    for (const auto& impl : registry())
        if (impl.dense && impl.has_forward()) options.impls.push_back(&impl);
    for (const auto& r : run_checks({p, 3}, options)) {
        EXPECT_EQ(r["outcome"], "not supported") << r.dump();
        EXPECT_NE(r["reason"].get<std::string>().find("zero sparsity"), std::string::npos);
    }
}

}  // namespace
}  // namespace moba
