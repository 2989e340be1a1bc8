// The decode steps on the GPU (SEMANTICS.md §9): every implementation with a decode step passes
// the decode suite against the float64 truth; paged caches give the packed result bitwise; and
// the decode checks catch steps that are wrong in ways a decode kernel can be: a paged cache
// read as if packed, a gated step that attends more than its selection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/cuda_check.hpp"
#include "harness/decode_check.hpp"
#include "harness/decode_run.hpp"
#include "harness/outcome.hpp"
#include "harness/suite.hpp"
#include "suites/gpu_test_util.hpp"

namespace moba {
namespace {

std::vector<const Implementation*> decode_entries() {
    std::vector<const Implementation*> entries;
    for (const auto& impl : registry())
        if (impl.has_decode()) entries.push_back(&impl);
    return entries;
}

TEST(DecodeGpu, TheDecodeSuitePassesForEveryDecodeImplementation) {
    MOBA_REQUIRE_GPU();
    CheckOptions options;
    options.impls = decode_entries();
    ASSERT_GE(options.impls.size(), 3u);  // naive, split_decode, split_decode_dense
    std::map<std::string, int> passed;
    for (const DecodeCase& c : decode_suite(4000, suite_input_families())) {
        for (const auto& r : run_decode_checks(c, options)) {
            SCOPED_TRACE(r.dump());
            const std::string outcome = r["outcome"];
            if (outcome == "not supported") {
                // Only the dense entry off zero sparsity, or a dtype/head dim the entry lacks.
                EXPECT_TRUE(r["impl"] == "split_decode_dense" || r["impl"] == "naive" ||
                            r["reason"].get<std::string>().find("implements") != std::string::npos);
                continue;
            }
            EXPECT_EQ(outcome, "passed");
            EXPECT_TRUE(r.contains("decode"));
            ++passed[r["impl"].get<std::string>() + "/" + r["check"].get<std::string>()];
        }
    }
    for (const char* key : {"naive/gating", "naive/forward", "naive/decode_step", "naive/zero_sparsity",
                            "split_decode/gating", "split_decode/forward", "split_decode/decode_step",
                            "split_decode/zero_sparsity", "split_decode_dense/zero_sparsity"})
        EXPECT_GT(passed[key], 0) << key;
}

DecodeCase gqa_case(int page_size) {
    DecodeCase c;
    Problem& p = c.base.problem;
    p.seqlens = {3000, 517, 64};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 128;
    p.topk = 3;
    p.dtype = DType::bf16;
    c.base.seed = 77;
    c.q_lens = {1, 9, 64};
    c.page_size = page_size;
    return c;
}

TEST(DecodeGpu, PagedCachesGiveThePackedResultBitwise) {
    MOBA_REQUIRE_GPU();
    const Implementation* impl = find_implementation("split_decode");
    ASSERT_NE(impl, nullptr);
    const DecodeHostInputs in = make_decode_inputs(gqa_case(0));
    DeviceDecode packed(*impl, gqa_case(0), in), paged(*impl, gqa_case(40), in);
    const DeviceDecode::Result a = packed.run(true), b = paged.run(true);
    EXPECT_EQ(a.sel.blocks, b.sel.blocks);
    ASSERT_EQ(a.out.size(), b.out.size());
    EXPECT_TRUE(std::equal(a.out.begin(), a.out.end(), b.out.begin(), [](float x, float y) {
        return std::memcmp(&x, &y, sizeof x) == 0;
    }));
    EXPECT_TRUE(std::equal(a.lse.begin(), a.lse.end(), b.lse.begin(), [](float x, float y) {
        return std::memcmp(&x, &y, sizeof x) == 0;
    }));
}

TEST(DecodeGpu, RepeatedStepsAreBitwiseEqual) {
    MOBA_REQUIRE_GPU();
    for (const Implementation* impl : decode_entries()) {
        SCOPED_TRACE(impl->name);
        DeviceDecode dev(*impl, gqa_case(40), make_decode_inputs(gqa_case(40)));
        const DeviceDecode::Result a = dev.run(!impl->dense), b = dev.run(!impl->dense);
        EXPECT_EQ(a.sel.blocks, b.sel.blocks);
        EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)), 0);
        EXPECT_EQ(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)), 0);
    }
}

// Plants: wrappers around split_decode, registered for the test only. Counts the records of
// `check` that fail the run (incorrect, or failed: NaN read from an unused pool row).
int failing_records(const Implementation& planted, const DecodeCase& c, const std::string& check) {
    CheckOptions options;
    options.impls = {&planted};
    options.add_zero_sparsity = false;
    int failing = 0;
    for (const auto& r : run_decode_checks(c, options))
        if (r["check"] == check && is_failure(parse_outcome(r["outcome"].get<std::string>()))) ++failing;
    return failing;
}

TEST(DecodeGpu, APagedCacheReadAsPackedIsCaught) {
    MOBA_REQUIRE_GPU();
    Implementation planted = *find_implementation("split_decode");
    planted.name = "planted_ignores_pages";
    const auto real = planted.decode;
    planted.decode = [real](const DecodeArgs& args) {
        DecodeArgs a = args;
        a.block_table = nullptr;  // the pool read as if it were the packed caches
        real(a);
    };
    planted.decode_prepare = [prepare = planted.decode_prepare](const DecodeArgs& args) {
        DecodeArgs a = args;
        a.block_table = nullptr;
        prepare(a);
    };
    EXPECT_GT(failing_records(planted, gqa_case(40), "forward"), 0);
    EXPECT_EQ(failing_records(planted, gqa_case(0), "forward"), 0);  // packed: the plant is harmless
}

TEST(DecodeGpu, AGatedStepThatAttendsMoreThanItsSelectionIsCaught) {
    MOBA_REQUIRE_GPU();
    Implementation planted = *find_implementation("split_decode");
    planted.name = "planted_attends_everything";
    const Implementation& dense = *find_implementation("split_decode_dense");
    const auto real = planted.decode;
    planted.decode = [real, &dense](const DecodeArgs& args) {
        real(args);  // gates (writes sel) and attends it
        if (args.gate) dense.decode(args);  // ... then overwrites out, lse with every key's
    };
    // The dense workspace may be larger than split_decode's: give the plant the larger one.
    planted.decode_workspace_bytes = [moba = planted.decode_workspace_bytes, &dense](const Problem& p, std::int64_t q) {
        return std::max(moba(p, q), dense.decode_workspace_bytes(p, q));
    };
    EXPECT_GT(failing_records(planted, gqa_case(0), "decode_step"), 0);
}

// A prepare whose state the steps find through a word nobody writes: the steps read the kept
// means 256 bytes times that word further on, right on memory that happens to be zero (as fresh
// allocations often are), wrong on anything else. The decode workspace is poisoned before
// decode_prepare (SEMANTICS.md §5), so the word reads -1 and the steps' gating scores the wrong
// means.
TEST(DecodeGpu, APrepareThatReliesOnAZeroedWorkspaceIsCaught) {
    MOBA_REQUIRE_GPU();
    constexpr std::ptrdiff_t kHeader = 256;  // keeps the real workspace's alignment
    Implementation planted = *find_implementation("split_decode");
    planted.name = "planted_trusts_fresh_memory";
    planted.decode_workspace_bytes = [real = planted.decode_workspace_bytes](const Problem& p, std::int64_t q) {
        return real(p, q) + kHeader;
    };
    planted.decode_prepare = [prepare = planted.decode_prepare](const DecodeArgs& args) {
        DecodeArgs a = args;
        a.workspace = static_cast<char*>(args.workspace) + kHeader;
        prepare(a);
    };
    planted.decode = [real = planted.decode](const DecodeArgs& args) {
        std::int32_t word = 0;
        MOBA_CUDA_CALL(cudaMemcpy(&word, args.workspace, sizeof word, cudaMemcpyDeviceToHost));
        DecodeArgs a = args;
        a.workspace = static_cast<char*>(args.workspace) + kHeader * (1 + std::ptrdiff_t{word});
        real(a);
    };
    EXPECT_GT(failing_records(planted, gqa_case(0), "gating"), 0);
}

// A step right everywhere it is judged that writes one token's row past the end of out and
// scribbles on the k cache (SEMANTICS.md §5): each an incorrect `bounds` record, the judged
// records still passing; the honest split_decode adds none.
TEST(DecodeGpu, WritesOutsideTheOutputsAreCaught) {
    MOBA_REQUIRE_GPU();
    Implementation planted = *find_implementation("split_decode");
    planted.name = "planted_stray_writer";
    const auto real = planted.decode;
    planted.decode = [real](const DecodeArgs& args) {
        real(args);
        const std::size_t row = static_cast<std::size_t>(args.cache.heads_q) * args.cache.head_dim * 2;
        MOBA_CUDA_CALL(cudaMemsetAsync(static_cast<char*>(args.out) + args.total_q * row, 0, row, args.stream));
        if (!args.gate) MOBA_CUDA_CALL(cudaMemsetAsync(const_cast<void*>(args.k), 0, 2, args.stream));
    };
    CheckOptions options;
    options.impls = {&planted, find_implementation("split_decode")};
    options.add_zero_sparsity = false;
    std::vector<std::string> bounds;
    for (const auto& r : run_decode_checks(gqa_case(40), options)) {
        if (r["check"] == "bounds") {
            EXPECT_EQ(r["impl"], "planted_stray_writer") << r.dump(1);
            EXPECT_EQ(r["outcome"], "incorrect") << r.dump(1);
            bounds.push_back(r["reason"].get<std::string>());
        } else if (r["impl"] == "split_decode") {
            EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
        }
    }
    std::string all;
    for (const auto& b : bounds) all += b + "\n";
    EXPECT_NE(all.find("decode step (gating): 2048 bytes written past the end of out (first at byte +0"),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("decode step: 2048 bytes written past the end of out"), std::string::npos) << all;
    EXPECT_NE(all.find("decode step: the k cache changed: "), std::string::npos) << all;
}

// A step right in every value that launches on the legacy default stream instead of
// args.stream: the judged step runs on a held non-blocking stream, so its outputs come back
// poisoned, and each failing record says where the step ran. The gating and decode_step records
// (steps on the default stream) pass.
TEST(DecodeGpu, AStepLaunchedOnAnotherStreamIsCaught) {
    MOBA_REQUIRE_GPU();
    Implementation planted = *find_implementation("split_decode");
    planted.name = "planted_ignores_its_stream";
    const auto real = planted.decode;
    planted.decode = [real](const DecodeArgs& args) {
        DecodeArgs on_default = args;
        on_default.stream = nullptr;
        real(on_default);
    };
    CheckOptions options;
    options.impls = {&planted};
    options.add_zero_sparsity = false;
    int failing = 0;
    for (const auto& r : run_decode_checks(gqa_case(40), options)) {
        const bool judged = r["check"] == "forward";
        if (!judged) {
            EXPECT_EQ(r["outcome"], "passed") << r.dump(1);
            continue;
        }
        if (r["outcome"] == "passed") continue;
        ++failing;
        EXPECT_NE(r["reason"].get<std::string>().find("non-blocking stream held"), std::string::npos) << r.dump(1);
    }
    EXPECT_GT(failing, 0);
}

}  // namespace
}  // namespace moba
