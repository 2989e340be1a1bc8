// `moba check` on decode steps as a user meets it without a GPU: the decode suite's coverage,
// every bad decode flag refused naming the value before any work, and a decode configuration that
// writes a complete report the schema accepts, each record carrying its decode shape and a
// command that reruns it. (The kernels themselves: test_decode_gpu.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/cli/bench_command.hpp"
#include "harness/cli/check_command.hpp"
#include "harness/decode_check.hpp"
#include "harness/suite.hpp"
#include "suites/binary_run.hpp"
#include "test_util.hpp"

namespace moba::cli {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using test::scratch;

test::BinaryRun run_moba(const std::string& args) {
    return test::run_binary(MOBA_BINARY, args, "decode_check_cli.log");
}

TEST(DecodeSuite, CoversLayoutsDtypesHeadDimsPagingAndFamilies) {
    const std::vector<DecodeCase> cases = decode_suite(10, suite_input_families());
    ASSERT_EQ(cases.size(), 64u);  // 4 batches x 4 layouts x 2 top-k x 2 dtypes
    std::set<std::string> layouts, families;
    std::set<int> head_dims, page_sizes, max_q_lens;
    std::set<DType> dtypes;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const DecodeCase& c = cases[i];
        EXPECT_NO_THROW(c.batch().validate()) << c.flags();
        EXPECT_EQ(c.base.seed, 10 + i);
        layouts.insert(std::string(head_layout(c.base.problem.heads_q, c.base.problem.heads_kv)));
        families.insert(std::string(to_string(c.base.inputs)));
        head_dims.insert(c.base.problem.head_dim);
        page_sizes.insert(c.page_size);
        dtypes.insert(c.base.problem.dtype);
        max_q_lens.insert(*std::max_element(c.q_lens.begin(), c.q_lens.end()));
        // Paging must be exercised with pages that align with nothing.
        if (c.page_size > 0) {
            EXPECT_NE(c.base.problem.block % c.page_size, 0);
        }
    }
    EXPECT_EQ(layouts, (std::set<std::string>{"MHA", "GQA", "MQA"}));
    EXPECT_EQ(families.size(), suite_input_families().size());
    EXPECT_EQ(head_dims, (std::set<int>{64, 128}));
    EXPECT_EQ(page_sizes, (std::set<int>{0, 24}));
    EXPECT_EQ(dtypes.size(), 2u);
    EXPECT_EQ(max_q_lens, (std::set<int>{1, 64, 513}));  // decode, chunked prefill, whole prefill
}

CheckFlags decode_config() {
    CheckFlags f;
    f.seqlens = "300,1000";
    f.q_lens = "1,7";
    f.heads = 4;
    f.kv_heads = 2;
    f.head_dim = 64;
    f.block = 64;
    f.topk = 2;
    f.given = {"--seqlens", "--q-lens", "--heads", "--kv-heads", "--head-dim", "--block", "--topk"};
    return f;
}

TEST(PlanDecodeCheck, BuildsOneCasePerFamilyWithItsZeroSparsityTwin) {
    CheckFlags f = decode_config();
    f.inputs = "normal,sink";
    f.page_size = 24;
    f.given.insert("--page-size");
    const CheckPlan plan = plan_check(f, false);
    EXPECT_TRUE(plan.cases.empty());
    ASSERT_EQ(plan.decode_cases.size(), 2u);
    EXPECT_EQ(plan.decode_cases[0].q_lens, (std::vector<int>{1, 7}));
    EXPECT_EQ(plan.decode_cases[1].page_size, 24);
    EXPECT_TRUE(plan.options.add_zero_sparsity);
    EXPECT_EQ(plan.decode_cases[0].flags(),
              plan.decode_cases[0].base.problem.flags() + " --q-lens 1,7 --page-size 24 --seed 1 --inputs normal");
}

TEST(PlanDecodeCheck, EveryBadDecodeInputNamesTheValue) {
    CheckFlags f = decode_config();
    f.q_lens = "1";
    expect_error([&] { plan_check(f, false); }, "2 cache lengths but 1 query lengths");
    f = decode_config();
    f.q_lens = "1,1001";
    expect_error([&] { plan_check(f, false); }, "request 1 has q_len 1001 (1 <= q_len <= k_len = 1000)");
    f = decode_config();
    f.page_size = -3;
    f.given.insert("--page-size");
    expect_error([&] { plan_check(f, false); }, "--page-size -3");
    f = decode_config();
    f.gating_only = true;
    f.given.insert("--gating-only");
    expect_error([&] { plan_check(f, false); }, "--gating-only does not apply to decode checks");
    f = decode_config();
    f.given.insert("--shard");
    f.shard = "0/2";
    expect_error([&] { plan_check(f, false); }, "--shard 0/2 needs --suite");
    CheckFlags suite;
    suite.suite = "decode";
    suite.seqlens = "100";
    suite.given = {"--suite", "--seqlens"};
    expect_error([&] { plan_check(suite, false); }, "--seqlens does not apply with --suite decode");
    CheckFlags no_q;
    no_q.seqlens = "100";
    no_q.page_size = 16;
    no_q.given = {"--seqlens", "--page-size"};
    expect_error([&] { plan_check(no_q, false); }, "needs --seqlens (cache lengths) and --q-lens");
}

TEST(PlanDecodeCheck, AllMeansTheEntriesWithADecodeStepAndShardsSplitTheSuite) {
    CheckFlags f;
    f.suite = "decode";
    f.given = {"--suite"};
    const CheckPlan whole = plan_check(f, true);
    ASSERT_FALSE(whole.options.impls.empty());
    for (const Implementation* impl : whole.options.impls) EXPECT_TRUE(impl->has_decode()) << impl->name;
    f.shard = "1/3";
    const CheckPlan shard = plan_check(f, true);
    ASSERT_EQ(shard.decode_cases.size(), (whole.decode_cases.size() + 1) / 3);
    EXPECT_EQ(shard.decode_cases[0].base.seed, whole.decode_cases[1].base.seed);
    // And prefill's "all" leaves the decode-only entries out.
    CheckFlags prefill;
    prefill.seqlens = "100";
    for (const Implementation* impl : plan_check(prefill, true).options.impls)
        EXPECT_TRUE(impl->has_forward()) << impl->name;
}

// `moba bench --q-len` times decode steps through the decode study: its axes become the study's.
TEST(DecodeBench, BenchAxesBecomeTheStudyGridAndPrefillFlagsAreRefused) {
    BenchFlags f;
    f.seqlen = "8K,16K";
    f.heads = "32";
    f.kv_heads = "32,8,1";
    f.batch = 2;
    f.q_len = 1;
    f.given = {"--seqlen", "--heads", "--kv-heads", "--batch", "--q-len"};
    const DecodeStudyFlags s = decode_bench_flags(f);
    EXPECT_EQ(s.layouts, "32:32,32:8,32:1");
    EXPECT_EQ(s.cache, "8K,16K");
    EXPECT_EQ(s.batch, "2");
    EXPECT_EQ(s.impl, "split_decode");
    EXPECT_EQ(s.dense, "split_decode_dense");  // the study's default
    EXPECT_EQ(decode_study_grid(s).size(), 6u);
    BenchFlags dense = f;
    dense.dense = "split_decode_dense,sdpa_flash_decode";
    EXPECT_EQ(decode_bench_flags(dense).dense, "split_decode_dense,sdpa_flash_decode");
    BenchFlags phase = f;
    phase.given.insert("--phase");
    expect_error([&] { decode_bench_flags(phase); }, "--phase does not apply to a decode step");
    BenchFlags no_cache = f;
    no_cache.seqlen.clear();
    expect_error([&] { decode_bench_flags(no_cache); }, "--q-len needs --seqlen");
    BenchFlags dims = f;
    dims.head_dim = "64,128";
    expect_error([&] { decode_bench_flags(dims); }, "--q-len takes one --head-dim");
}

TEST(DecodeBench, DenseWithoutQLenIsRefused) {
    const test::BinaryRun r = run_moba("bench --seqlen 1K --dense split_decode_dense --out " +
                                       scratch("bench_dense_refused.json").string());
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--dense names dense decodes: it applies with --q-len only"), std::string::npos)
        << r.output;
}

TEST(DecodeCheckBinary, WritesACompleteValidReportWithRerunnableRecords) {
    const fs::path out = scratch("decode_check.json");
    fs::remove(out);
    const std::string flags =
        "--seqlens 300,1000,1 --q-lens 1,7,1 --heads 4 --kv-heads 2 --head-dim 64 --block 64 --topk 2 --page-size 24";
    const test::BinaryRun r = run_moba("check " + flags + " --out " + out.string());
    ASSERT_EQ(r.status, 0) << r.output;
    std::ifstream in(out);
    const auto doc = nlohmann::json::parse(in);
    EXPECT_TRUE(doc["complete"].get<bool>());
    std::set<std::string> checks;
    for (const auto& rec : doc["records"]) {
        SCOPED_TRACE(rec.dump());
        ASSERT_TRUE(rec.contains("decode"));
        EXPECT_EQ(rec["decode"]["q_lens"], (std::vector<int>{1, 7, 1}));
        EXPECT_EQ(rec["decode"]["page_size"], 24);
        EXPECT_NE(rec["command"].get<std::string>().find("--q-lens 1,7,1 --page-size 24"), std::string::npos);
        EXPECT_EQ(rec["outcome"], "passed");
        checks.insert(rec["check"].get<std::string>());
    }
    EXPECT_TRUE(checks.count("forward") && checks.count("zero_sparsity")) << r.output;
    const test::BinaryRun valid = run_moba("validate --schema " + std::string(MOBA_SCHEMA_PATH) + " " + out.string());
    EXPECT_EQ(valid.status, 0) << valid.output;
    const test::BinaryRun bad = run_moba("check --seqlens 300 --q-lens 301 --out " + out.string() + ".bad");
    EXPECT_EQ(bad.status, 2) << bad.output;
    EXPECT_NE(bad.output.find("request 0 has q_len 301"), std::string::npos) << bad.output;
    EXPECT_FALSE(fs::exists(out.string() + ".bad"));
    fs::remove(out);
}

}  // namespace
}  // namespace moba::cli
