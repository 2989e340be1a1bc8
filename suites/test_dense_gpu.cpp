// The dense implementations (full causal attention whatever the selection) against float64
// full causal attention on every zero-sparsity case of the quick matrix, and their refusal
// of sparse problems; wgmma_dense and wgmma_dense_atomic over several L2 sections at 32K and
// 64K. Skips without a GPU.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gpu_test_util.hpp"
#include "harness/check.hpp"
#include "harness/registry.hpp"
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

// The quick matrix's sequences are short enough that every head falls in one L2 section
// (kernels/wgmma/l2_sections.hpp). Here the dense causal, dQ and dK/dV kernels run several
// sections and a remainder: 32K MHA, 5 heads, in sections of 2 + 2 + 1 heads (16 MB K/V per
// head) beside a short sequence; 64K GQA 6:2 in sections of one kv group (32 MB per kv head), its
// dK/dV in sections of one kv head. A CTA mapped twice or not at all fails the check.
TEST(DenseGpu, WgmmaDenseIsRightOverSeveralL2Sections) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    // wgmma_dense_atomic: the same dK/dV kernel with the fused dQ (its atomics in sections too).
    options.impls = {find_implementation("wgmma_dense"), find_implementation("wgmma_dense_atomic")};
    ASSERT_NE(options.impls[0], nullptr);
    ASSERT_NE(options.impls[1], nullptr);
    options.reference = ReferenceKind::gpu;
    options.add_zero_sparsity = false;
    struct Shape {
        std::vector<int> seqlens;
        int heads_q, heads_kv;
    };
    for (const Shape& shape : {Shape{{32768, 777}, 5, 5}, Shape{{65536}, 6, 2}}) {
        CheckCase c;
        c.problem.seqlens = shape.seqlens;
        c.problem.heads_q = shape.heads_q;
        c.problem.heads_kv = shape.heads_kv;
        c.problem.head_dim = 128;
        c.problem.block = 512;
        c.problem.topk = c.problem.max_blocks();  // zero sparsity: what a dense implementation runs
        c.seed = 17;
        SCOPED_TRACE(testing::PrintToString(c));
        const auto records = run_checks(c, options);
        ASSERT_EQ(records.size(), 10u);  // out, lse, dq, dk, dv of each
        for (const auto& r : records) EXPECT_EQ(r.at("outcome"), "passed") << r.dump(1);
    }
}

TEST(DenseGpu, SparseProblemsAreNotSupported) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {300};
    p.heads_q = p.heads_kv = 2;
    p.head_dim = 128;  // every dense entry takes 128 (wgmma_dense_atomic only 128): refused for sparsity
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
