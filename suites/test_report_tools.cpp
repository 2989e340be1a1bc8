// Report tooling: the JSON Schema of reports/FORMAT.md and its validator, `moba compare`
// (matching, verdicts, geometric mean, listings, exit status) and `moba export` (CSV, markdown).
// Reports are built in memory with the real ReportWriter; check records come from run_checks
// on the CPU, bench records from bench_record() below.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness/bench.hpp"
#include "harness/check.hpp"
#include "harness/cli/compare_command.hpp"
#include "harness/cli/export_command.hpp"
#include "harness/report.hpp"
#include "harness/report_compare.hpp"
#include "harness/report_export.hpp"
#include "harness/records.hpp"
#include "harness/registry.hpp"
#include "harness/report_io.hpp"
#include "harness/schema.hpp"

namespace moba {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Helpers

json config(std::vector<int> seqlens = {4096}, int heads_q = 8, int heads_kv = 2,
            std::uint64_t seed = 1) {
    std::int64_t total = 0;
    for (int l : seqlens) total += l;
    return {{"seqlens", seqlens},
            {"heads_q", heads_q},
            {"heads_kv", heads_kv},
            {"layout", heads_kv == heads_q ? "MHA"
                       : heads_kv == 1     ? "MQA"
                                           : "GQA"},
            {"head_dim", 128},
            {"block", 512},
            {"topk", 3},
            {"dtype", "bf16"},
            {"scale", 0.08838834764831845},
            {"seed", seed},
            {"total_tokens", total},
            {"zero_sparsity", false}};
}

// A valid, passed bench record (FORMAT.md, kind "bench"): median `median_ms`, samples spread
// `spread` (relative) on either side of it.
json bench_record(const std::string& impl, double median_ms, double spread = 0.01,
                  json cfg = config(), const std::string& phase = "fwd",
                  const std::string& gating = "included") {
    const double flops = 4.0 * 128 * 8 * 4096 * 1536;
    return {{"kind", "bench"},
            {"config", cfg},
            {"impl", impl},
            {"phase", phase},
            {"gating", gating},
            {"timing",
             {{"samples", 50},
              {"median_ms", median_ms},
              {"min_ms", median_ms * (1 - spread)},
              {"max_ms", median_ms * (1 + spread)},
              {"mean_ms", median_ms},
              {"rel_stddev", spread / 2},
              {"warmup", 10},
              {"stop", "converged"}}},
            {"flops", flops},
            {"tflops", flops / (median_ms * 1e-3) / 1e12},
            {"gating_flops", 1e9},
            {"pairs", 8 * 4096 * 1536},
            {"dense_pairs", 8 * 4096 * 4097 / 2},
            {"ideal_speedup", 4097.0 / 2 / 1536},
            {"dense_impl", "dense_cublas"},
            {"speedup_vs_dense", nullptr},
            {"peak_memory_bytes", 1 << 20},
            {"sm_clock_start_mhz", 1980},
            {"sm_clock_end_mhz", 1980},
            {"throttled", false},
            {"check_outcome", "passed"},
            {"outcome", "passed"},
            {"reason", ""},
            {"command", "moba bench --seqlens 4096 --impl " + impl}};
}

json skipped_bench_record(const std::string& impl, const std::string& reason, json cfg = config()) {
    return {
        {"kind", "bench"},      {"config", cfg},        {"impl", impl},
        {"phase", "fwd"},       {"gating", "included"}, {"check_outcome", "incorrect"},
        {"outcome", "skipped"}, {"reason", reason},     {"command", "moba bench --impl " + impl}};
}

// A finished report made by the real writer, in memory.
json make_report(const std::vector<json>& records, const std::string& tool = "bench") {
    ReportWriter w("", tool, {"moba", tool});
    for (const json& r : records) w.add(r);
    w.finish();
    return w.document();
}

fs::path temp_dir() {
    const fs::path dir = fs::temp_directory_path() /
                         ("moba_report_tools_" + std::to_string(::getpid()) + "_" +
                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

fs::path write_json(const fs::path& path, const json& doc) {
    std::ofstream(path) << doc.dump(1);
    return path;
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run_moba(const std::string& args, std::string* output = nullptr);

const SchemaValidator& schema() {
    static const SchemaValidator v = SchemaValidator::from_file(MOBA_SCHEMA_PATH);
    return v;
}

std::string joined(const std::vector<std::string>& errors) {
    std::string s;
    for (const auto& e : errors) s += e + "\n";
    return s;
}

// Expects one of the errors to contain `needle` (pointer and complaint).
void expect_error(const json& doc, const std::string& needle) {
    const auto errors = schema().validate(doc);
    bool found = false;
    for (const auto& e : errors) found = found || e.find(needle) != std::string::npos;
    EXPECT_TRUE(found) << "expected an error containing \"" << needle << "\"; got:\n"
                       << joined(errors);
}

// A small report from the CPU checks (no GPU: the same-precision baseline is judged), as
// `moba check` writes it: gating, forward, backward and zero-sparsity records.
json real_check_report() {
    CheckCase c;
    c.problem.seqlens = {37, 5};
    c.problem.heads_q = 4;
    c.problem.heads_kv = 2;
    c.problem.head_dim = 16;
    c.problem.block = 8;
    c.problem.topk = 2;
    c.problem.dtype = DType::bf16;
    c.seed = 3;
    CheckOptions o;
    o.gpu = false;
    ReportWriter w("", "check", {"moba", "check", "--seqlens", "37,5"});
    for (auto& r : run_checks(c, o)) w.add(std::move(r));
    // What check.cpp writes when an implementation cannot run the shape.
    json unsupported = w.document()["records"][0];
    for (const char* key : {"pairs", "mismatches", "near_ties", "near_tie_mismatches", "invalid"})
        unsupported.erase(key);
    unsupported["impl"] = "naive";
    unsupported["check"] = "forward";
    unsupported["tensor"] = "";
    unsupported["outcome"] = "not supported";
    unsupported["reason"] = "head dim 512 is above 256";
    w.add(unsupported);
    w.finish();
    return w.document();
}

// ---------------------------------------------------------------------------------------------
// Schema and validator

TEST(Schema, AcceptsARealCheckReport) {
    const json doc = real_check_report();
    ASSERT_GE(doc["records"].size(), 10u);
    std::set<std::string> checks;
    for (const auto& r : doc["records"]) checks.insert(r["check"].get<std::string>());
    EXPECT_EQ(checks, (std::set<std::string>{"gating", "forward", "backward", "zero_sparsity"}));
    const auto errors = schema().validate(doc);
    EXPECT_TRUE(errors.empty()) << joined(errors);
}

TEST(Schema, AcceptsABenchReportAndBothDeviceShapes) {
    json doc = make_report(
        {bench_record("naive", 1.0), skipped_bench_record("wgmma_moba", "check incorrect")});
    auto errors = schema().validate(doc);
    EXPECT_TRUE(errors.empty()) << joined(errors);

    DeviceInfo gpu;
    gpu.present = true;
    gpu.name = "NVIDIA H100 80GB HBM3";
    gpu.sms = 132;
    gpu.cc_major = 9;
    gpu.memory_bytes = std::size_t{80} << 30;
    gpu.sm_clock_mhz = 1980;
    gpu.memory_clock_mhz = 2619;
    gpu.driver_version = 13000;
    gpu.runtime_version = 12080;
    doc["device"] = device_json(gpu);
    doc["records"][0]["published"] = {
        {"figure", "2a"}, {"dense_ms", 100.0}, {"moba_ms", 20.0}, {"speedup", 5.0}};
    doc["records"][0]["gating"] = "separate";
    doc["records"][0]["gating_ms"] = 0.1;
    errors = schema().validate(doc);
    EXPECT_TRUE(errors.empty()) << joined(errors);

    doc["device"].erase("sms");
    expect_error(doc, "/device: required property 'sms' is missing");
}

TEST(Schema, RejectsAMissingKeyNamingTheRecord) {
    json doc = make_report({bench_record("naive", 1.0), bench_record("naive", 2.0)});
    doc["records"][1].erase("outcome");
    expect_error(doc, "/records/1: required property 'outcome' is missing");
    doc = make_report({});
    doc.erase("summary");
    expect_error(doc, "(root): required property 'summary' is missing");
}

TEST(Schema, RejectsAWrongOutcomeString) {
    json doc = real_check_report();
    doc["records"][3]["outcome"] = "fine";
    expect_error(doc,
                 "/records/3/outcome: 'fine' is not one of [\"passed\",\"incorrect\",\"failed\","
                 "\"not supported\",\"skipped\"]");
    doc = make_report({bench_record("naive", 1.0)});
    doc["records"][0]["check_outcome"] = "ok";
    expect_error(doc, "/records/0/check_outcome: 'ok' is not one of");
}

TEST(Schema, RejectsWrongTypes) {
    json doc = make_report({bench_record("naive", 1.0)});
    doc["records"][0]["config"]["heads_q"] = "8";
    doc["records"][0]["timing"]["median_ms"] = nullptr;
    doc["records"][0]["config"]["seqlens"] = json::array({4096, 2.5});
    doc["complete"] = 1;
    expect_error(doc, "/records/0/config/heads_q: '8' is not of type integer");
    expect_error(doc, "/records/0/timing/median_ms: null is not of type number");
    expect_error(doc, "/records/0/config/seqlens/1: 2.5 is not of type integer");
    expect_error(doc, "/complete: 1 is not of type boolean");
    EXPECT_EQ(schema().validate(doc).size(), 4u) << joined(schema().validate(doc));
}

TEST(Schema, EnvelopeIsStrict) {
    json doc = make_report({});
    doc["extra"] = true;
    doc["format_version"] = 2;
    doc["summary"]["ambiguous"] = 0;
    expect_error(doc, "(root): property 'extra' is not allowed");
    expect_error(doc, "/format_version: 2 is not 1");
    expect_error(doc, "/summary: property 'ambiguous' is not allowed");
}

TEST(Schema, KindSpecificRules) {
    json doc = make_report({bench_record("naive", 1.0), real_check_report()["records"][1]});
    ASSERT_TRUE(schema().validate(doc).empty()) << joined(schema().validate(doc));
    json bad = doc;
    bad["records"][0].erase("timing");  // a passed bench record has a timing
    expect_error(bad, "/records/0: required property 'timing' is missing");
    bad = doc;
    bad["records"][0]["gating"] = "separate";  // ... and gating_ms when gating is separate
    expect_error(bad, "/records/0: required property 'gating_ms' is missing");
    bad = doc;
    bad["records"][0]["phase"] = "forward";
    expect_error(bad, "/records/0/phase: 'forward' is not one of [\"fwd\",\"bwd\",\"fwdbwd\"]");
    bad = doc;
    bad["records"][0]["reason"] = "fast";  // reason is empty when passed
    expect_error(bad, "/records/0/reason: 'fast' is not ''");
    bad = doc;
    ASSERT_TRUE(bad["records"][1]["tensor"].get<std::string>() != "selection");
    bad["records"][1].erase("ratio");  // a tensor check keeps its figures
    expect_error(bad, "/records/1: required property 'ratio' is missing");
    bad = doc;
    bad["records"][1]["kind"] = "timing";
    expect_error(bad, "/records/1/kind: 'timing' is not one of [\"check\",\"bench\",\"decode_io\"]");
    bad = doc;
    bad["records"][1]["ratio"] = nullptr;  // not finite: null is allowed
    EXPECT_TRUE(schema().validate(bad).empty()) << joined(schema().validate(bad));
}

TEST(SchemaValidator, KeywordsBehaveAsDraft2020) {
    const SchemaValidator v(json::parse(R"({
        "type": "object",
        "properties": {
            "n": {"type": ["integer", "null"], "minimum": 2},
            "list": {"type": "array", "minItems": 2, "items": {"const": "x"}},
            "mode": {"enum": ["a", "b"]}
        },
        "additionalProperties": {"type": "string"},
        "if": {"properties": {"mode": {"const": "a"}}, "required": ["mode"]},
        "then": {"required": ["n"]},
        "else": {"required": ["list"]}
    })"));
    EXPECT_TRUE(v.validate(json::parse(R"({"mode": "a", "n": 3.0, "other": "s"})")).empty());
    EXPECT_TRUE(v.validate(json::parse(R"({"mode": "b", "list": ["x", "x"], "n": null})")).empty());
    const auto e = v.validate(json::parse(R"({"mode": "b", "n": 1, "list": ["x"], "other": 4})"));
    // Properties are visited in the document's (sorted) key order.
    EXPECT_EQ(joined(e),
              "/list: 1 items, fewer than the minimum 2\n"
              "/n: 1 is less than the minimum 2\n"
              "/other: 4 is not of type string\n")
        << joined(e);
    EXPECT_EQ(joined(v.validate(json::parse(R"({"mode": "a", "n": 2.5})"))),
              "/n: 2.5 is not of type [\"integer\",\"null\"]\n");
    EXPECT_EQ(joined(v.validate(json::parse(R"({"mode": "a"})"))),
              "(root): required property 'n' is missing\n");
    EXPECT_EQ(joined(v.validate(json::parse(R"({"mode": "b"})"))),
              "(root): required property 'list' is missing\n");
    EXPECT_EQ(joined(v.validate(json::parse(R"({"list": ["x", "y"]})"))),
              "/list/1: 'y' is not 'x'\n");
    EXPECT_EQ(joined(v.validate(json::parse("[1]"))), "(root): [1] is not of type object\n");
}

TEST(SchemaValidator, RefusesWhatItDoesNotSupport) {
    EXPECT_THROW(SchemaValidator(json{{"pattern", "^a"}}), std::invalid_argument);
    EXPECT_THROW(SchemaValidator(json{{"properties", {{"a", {{"oneOf", json::array()}}}}}}),
                 std::invalid_argument);
    EXPECT_THROW(SchemaValidator(json{{"$ref", "#/$defs/missing"}}), std::invalid_argument);
    EXPECT_THROW(SchemaValidator(json{{"$ref", "other.json#/x"}}), std::invalid_argument);
    EXPECT_THROW(SchemaValidator(json{{"type", "float"}}), std::invalid_argument);
    EXPECT_THROW(SchemaValidator::from_file("/nonexistent/schema.json"), std::runtime_error);
    try {
        SchemaValidator(json{{"$defs", {{"x", {{"format", "date"}}}}}});
        ADD_FAILURE() << "no error for an unsupported keyword";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("'format' at #/$defs/x"), std::string::npos)
            << e.what();
    }
}

// ---------------------------------------------------------------------------------------------
// Verdicts

TimingStats stats(double median, double spread) {
    return {median, median * (1 - spread), median * (1 + spread), spread / 2};
}

TEST(Judge, RegressionIsSlower) {
    const Judgement j = judge(stats(1.0, 0.01), stats(1.3, 0.01), kDefaultThreshold);
    EXPECT_NEAR(j.change, 0.3, 1e-12);
    EXPECT_EQ(j.verdict, Verdict::slower);
}

TEST(Judge, ImprovementIsFaster) {
    const Judgement j = judge(stats(1.0, 0.01), stats(0.7, 0.01), kDefaultThreshold);
    EXPECT_NEAR(j.change, -0.3, 1e-12);
    EXPECT_EQ(j.verdict, Verdict::faster);
}

TEST(Judge, ChangeInsideTheNoiseIsSame) {
    // rel_stddev 3% on both sides: noise sqrt(2) * 3% = 4.24%; +4% is inside it.
    const Judgement j = judge({1.0, 0.9, 1.1, 0.03}, {1.04, 0.94, 1.14, 0.03}, kDefaultThreshold);
    EXPECT_NEAR(j.noise, std::sqrt(2.0) * 0.03, 1e-12);
    EXPECT_EQ(j.verdict, Verdict::same);
    // The noise is at least 1%, even for perfectly steady samples.
    const Judgement floor =
        judge({1.0, 1.0, 1.0, 0.0}, {1.009, 1.009, 1.009, 0.0}, kDefaultThreshold);
    EXPECT_EQ(floor.noise, kNoiseFloor);
    EXPECT_EQ(floor.verdict, Verdict::same);
    EXPECT_EQ(judge({1.0, 1.0, 1.0, 0.0}, {1.2, 1.2, 1.2, 0.0}, kDefaultThreshold).verdict,
              Verdict::slower);
}

TEST(Judge, BetweenNoiseAndThresholdIsAmbiguous) {
    EXPECT_EQ(judge(stats(1.0, 0.0), stats(1.03, 0.0), kDefaultThreshold).verdict,
              Verdict::ambiguous);
    EXPECT_EQ(judge(stats(1.0, 0.0), stats(0.97, 0.0), kDefaultThreshold).verdict,
              Verdict::ambiguous);
    // The threshold is a parameter: +8% is slower at 5%, ambiguous at 10%.
    EXPECT_EQ(judge(stats(1.0, 0.0), stats(1.08, 0.0), 0.05).verdict, Verdict::slower);
    EXPECT_EQ(judge(stats(1.0, 0.0), stats(1.08, 0.0), 0.10).verdict, Verdict::ambiguous);
}

TEST(Judge, OverlappingRangesAreAmbiguous) {
    // +20%, small rel_stddev, but one slow outlier sample in BASE reaches NEW's median.
    EXPECT_EQ(judge({1.0, 0.99, 1.25, 0.01}, {1.2, 1.19, 1.21, 0.01}, kDefaultThreshold).verdict,
              Verdict::ambiguous);
    // ... or a fast sample of NEW reaches BASE's median.
    EXPECT_EQ(judge({1.0, 0.99, 1.01, 0.01}, {1.2, 0.95, 1.21, 0.01}, kDefaultThreshold).verdict,
              Verdict::ambiguous);
    EXPECT_EQ(judge({1.0, 0.99, 1.01, 0.01}, {1.2, 1.19, 1.21, 0.01}, kDefaultThreshold).verdict,
              Verdict::slower);
    // No range on a side (min/max absent): no range test there.
    const double nan = std::nan("");
    EXPECT_EQ(judge({1.0, nan, nan, 0.01}, {1.2, nan, nan, 0.01}, kDefaultThreshold).verdict,
              Verdict::slower);
}

// ---------------------------------------------------------------------------------------------
// compare_reports and `moba compare`

TEST(Compare, PlantedRegressionIsSlowerAndExitsOne) {
    const json base = make_report({bench_record("naive", 1.0), bench_record("dense_cublas", 0.5)});
    const json slow = make_report({bench_record("naive", 1.3), bench_record("dense_cublas", 0.5)});
    const Comparison c = compare_reports(base, slow, kDefaultThreshold, "base.json", "new.json");
    ASSERT_EQ(c.pairs.size(), 2u);
    EXPECT_EQ(c.pairs[0].judgement.verdict, Verdict::slower);
    EXPECT_EQ(c.pairs[1].judgement.verdict, Verdict::same);
    EXPECT_TRUE(c.regression());

    const fs::path dir = temp_dir();
    cli::CompareFlags f;
    f.base = write_json(dir / "base.json", base).string();
    f.next = write_json(dir / "new.json", slow).string();
    f.markdown = (dir / "cmp.md").string();
    EXPECT_EQ(cli::run_compare({f.base, f.next, 5.0, f.markdown}), 1);
    const std::string md = read_text(f.markdown);
    EXPECT_NE(md.find("| GQA 8x2 bf16 D128 L=4096 Bs=512 k=3 | naive | fwd | included | 1 | 1.3 | "
                      "+30.0% | ±1.0% | slower |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("2 compared: 0 faster, 1 slower, 1 same, 0 ambiguous"), std::string::npos)
        << md;
    // The same runs with the files swapped: an improvement, exit 0.
    EXPECT_EQ(cli::run_compare({f.next, f.base, 5.0, ""}), 0);
    // Against itself: nothing moves.
    const Comparison self = compare_reports(base, base, kDefaultThreshold, "a", "a");
    EXPECT_EQ(self.count(Verdict::same), 2u);
    EXPECT_DOUBLE_EQ(self.geomean_ratio(), 1.0);
    fs::remove_all(dir);
}

TEST(Compare, ImprovementIsFasterAndExitsZero) {
    const json base = make_report({bench_record("naive", 2.0)});
    const json fast = make_report({bench_record("naive", 1.0)});
    const Comparison c = compare_reports(base, fast, kDefaultThreshold, "b", "n");
    ASSERT_EQ(c.pairs.size(), 1u);
    EXPECT_EQ(c.pairs[0].judgement.verdict, Verdict::faster);
    EXPECT_FALSE(c.regression());
    EXPECT_NE(comparison_text(c, "b", "n").find("-50.0%"), std::string::npos)
        << comparison_text(c, "b", "n");
}

// Measured memory (records with allocated_memory_bytes): growth past the threshold and 64 MiB is a
// regression even at the same speed; within either, or on records of the older kind, it is not.
TEST(Compare, MemoryThatGrewIsARegression) {
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    auto with_memory = [&](double gib, bool measured_kind = true) {
        json r = bench_record("naive", 1.0);
        r["peak_memory_bytes"] = gib * kGiB;
        if (measured_kind) r["allocated_memory_bytes"] = gib * kGiB;
        return r;
    };
    const json base = make_report({with_memory(40.0)});
    const Comparison grew = compare_reports(base, make_report({with_memory(60.0)}), kDefaultThreshold, "b", "n");
    ASSERT_EQ(grew.pairs.size(), 1u);
    EXPECT_EQ(grew.pairs[0].judgement.verdict, Verdict::same);
    EXPECT_TRUE(grew.pairs[0].memory_grew);
    EXPECT_TRUE(grew.regression());
    EXPECT_NE(comparison_text(grew, "b", "n").find("Memory grew (1):"), std::string::npos);
    EXPECT_NE(comparison_text(grew, "b", "n").find("40.000 -> 60.000 GiB (+50.0%)"), std::string::npos)
        << comparison_text(grew, "b", "n");
    EXPECT_NE(comparison_markdown(grew, "b", "n").find("### Memory grew (1)"), std::string::npos);
    // 3% more: under the 5% threshold.
    EXPECT_FALSE(compare_reports(base, make_report({with_memory(41.2)}), kDefaultThreshold, "b", "n").regression());
    // 50% more of a tiny run: under 64 MiB, the measurement's granularity.
    const json tiny = make_report({with_memory(0.05)});
    EXPECT_FALSE(compare_reports(tiny, make_report({with_memory(0.075)}), kDefaultThreshold, "b", "n").regression());
    // An older report's peak_memory_bytes left out the inputs: not compared.
    EXPECT_FALSE(
        compare_reports(make_report({with_memory(20.0, false)}), make_report({with_memory(60.0)}), kDefaultThreshold, "b", "n")
            .regression());
    // A measurement another process disturbed (SEMANTICS.md §6) is not judged, on either side.
    json disturbed = with_memory(60.0);
    disturbed["memory_disturbed"] = "free device memory fell by 20480 MiB during the timed loop";
    EXPECT_FALSE(compare_reports(base, make_report({disturbed}), kDefaultThreshold, "b", "n").regression());
    json disturbed_base = with_memory(20.0);
    disturbed_base["memory_disturbed"] = "measured 20480 MiB less than the harness allocated";
    EXPECT_FALSE(compare_reports(make_report({disturbed_base}), base, kDefaultThreshold, "b", "n").regression());
    EXPECT_TRUE(memory_grew(1e9, 2e9, 0.05));
    EXPECT_FALSE(memory_grew(std::nan(""), 2e9, 0.05));
}

TEST(Compare, MatchesIgnoringSeedAndListsTheRest) {
    const json base = make_report({
        bench_record("naive", 1.0, 0.01, config({4096}, 8, 2, 1)),
        bench_record("naive", 1.0, 0.01, config({8192})),
        bench_record("naive", 1.0, 0.01, config({4096}), "bwd"),
        real_check_report()["records"][0],
    });
    const json next = make_report({
        bench_record("naive", 1.0, 0.01, config({4096}, 8, 2, 99)),  // another seed: same state
        bench_record("naive", 1.0, 0.01, config({4096}), "fwdbwd"),
        bench_record("naive", 1.0, 0.01, config({4096}, 8, 1)),
        bench_record("naive", 1.0, 0.01, config({4096}), "fwd", "separate"),
    });
    const Comparison c = compare_reports(base, next, kDefaultThreshold, "b", "n");
    ASSERT_EQ(c.pairs.size(), 1u);
    EXPECT_EQ(c.pairs[0].base.index, 0u);
    EXPECT_EQ(c.pairs[0].next.index, 0u);
    ASSERT_EQ(c.only_base.size(), 2u);
    EXPECT_EQ(c.only_base[0].index, 1u);
    EXPECT_EQ(c.only_base[1].phase, "bwd");
    ASSERT_EQ(c.only_next.size(), 3u);
    EXPECT_EQ(c.only_next[0].phase, "fwdbwd");
    EXPECT_EQ(c.only_next[1].config, "MQA 8x1 bf16 D128 L=4096 Bs=512 k=3");
    EXPECT_EQ(c.only_next[2].gating, "separate");
    EXPECT_EQ(c.base_other, 0u);
    ASSERT_EQ(c.check_only_base.size(), 1u);  // a check record, with no check in NEW
    EXPECT_EQ(c.check_only_base[0].index, 3u);
    const std::string text = comparison_text(c, "b", "n");
    EXPECT_NE(text.find("Only in BASE (2):\n  GQA 8x2 bf16 D128 L=8192 Bs=512 k=3 naive fwd "
                        "included (record 1)  passed"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("Only in NEW (3):"), std::string::npos) << text;
    EXPECT_NE(text.find("Checks only in BASE (1):\n  GQA 4x2 bf16 D16 L=37,5 Bs=8 k=2 cpu_baseline "
                        "gating selection (record 3)  passed"),
              std::string::npos)
        << text;

    // Two records of one key on each side pair in order; a third is left over.
    const json two = make_report({bench_record("naive", 1.0), bench_record("naive", 2.0)});
    const json three = make_report(
        {bench_record("naive", 1.0), bench_record("naive", 2.0), bench_record("naive", 3.0)});
    const Comparison d = compare_reports(two, three, kDefaultThreshold, "b", "n");
    EXPECT_EQ(d.count(Verdict::same), 2u);
    ASSERT_EQ(d.only_next.size(), 1u);
    EXPECT_EQ(d.only_next[0].index, 2u);
}

TEST(Compare, RecordsThatDidNotPassAreListedNotJudged) {
    const json base =
        make_report({bench_record("naive", 1.0), skipped_bench_record("tiled_mma", "was slow")});
    const json next =
        make_report({skipped_bench_record("naive", "forward check incorrect: ratio 3.2"),
                     bench_record("tiled_mma", 1.0)});
    const Comparison c = compare_reports(base, next, kDefaultThreshold, "b", "n");
    EXPECT_TRUE(c.pairs.empty());
    ASSERT_EQ(c.not_passed.size(), 2u);
    EXPECT_EQ(c.not_passed[0].first.outcome, "passed");
    EXPECT_EQ(c.not_passed[0].second.outcome, "skipped");
    const std::string text = comparison_text(c, "b", "n");
    EXPECT_NE(text.find("NEW  skipped: forward check incorrect: ratio 3.2"), std::string::npos)
        << text;
    EXPECT_NE(text.find("BASE skipped: was slow"), std::string::npos) << text;
    EXPECT_NE(comparison_markdown(c, "b", "n").find("outcome not passed (2)"), std::string::npos);
    EXPECT_TRUE(std::isnan(c.geomean_ratio()));
    EXPECT_NE(text.find("geometric mean new/base n/a"), std::string::npos) << text;
}

TEST(Compare, GeometricMeanOfRatios) {
    const json base =
        make_report({bench_record("a", 1.0), bench_record("b", 2.0), bench_record("c", 4.0)});
    const json next =
        make_report({bench_record("a", 1.3), bench_record("b", 1.0), bench_record("c", 4.0)});
    const Comparison c = compare_reports(base, next, kDefaultThreshold, "b", "n");
    ASSERT_EQ(c.pairs.size(), 3u);
    EXPECT_NEAR(c.geomean_ratio(), std::cbrt(1.3 * 0.5 * 1.0), 1e-12);
    EXPECT_NE(comparison_text(c, "b", "n").find("geometric mean new/base 0.866"),
              std::string::npos);
    EXPECT_EQ(c.count(Verdict::slower), 1u);
    EXPECT_EQ(c.count(Verdict::faster), 1u);
    EXPECT_EQ(c.count(Verdict::same), 1u);
}

TEST(Compare, TerminalTableLayout) {
    const json base = make_report({bench_record("naive", 1.0)});
    const json next = make_report({bench_record("naive", 1.3)});
    const std::string text =
        comparison_text(compare_reports(base, next, 0.05, "b.json", "n.json"), "b.json", "n.json");
    EXPECT_EQ(text,
              "BASE b.json\n"
              "NEW  n.json\n"
              "\n"
              "config                               impl   phase  gating    base ms  new ms  "
              "change  noise  verdict\n"
              "GQA 8x2 bf16 D128 L=4096 Bs=512 k=3  naive  fwd    included        1     1.3  "
              "+30.0%  ±1.0%  slower\n"
              "\n"
              "1 compared: 0 faster, 1 slower, 0 same, 0 ambiguous; geometric mean new/base 1.300 "
              "(threshold 5%, "
              "noise floor 1.0%)\n");
}

TEST(Compare, InputErrorsNameTheFileAndExitTwo) {
    const fs::path dir = temp_dir();
    const fs::path good = write_json(dir / "good.json", make_report({bench_record("naive", 1.0)}));
    std::ofstream(dir / "broken.json") << "{\"format\": \"moba-report\", ";
    json other = make_report({});
    other["format"] = "nvbench";
    write_json(dir / "other.json", other);
    json v2 = make_report({});
    v2["format_version"] = 2;
    write_json(dir / "v2.json", v2);
    json no_timing = make_report({bench_record("naive", 1.0)});
    no_timing["records"][0]["timing"].erase("median_ms");
    write_json(dir / "no_timing.json", no_timing);

    auto message = [&](const fs::path& p) {
        try {
            load_report(p);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(
        message(dir / "missing.json").rfind((dir / "missing.json").string() + ": cannot read", 0),
        0u);
    EXPECT_NE(message(dir / "broken.json").find("broken.json: not valid JSON"), std::string::npos);
    EXPECT_NE(message(dir / "other.json")
                  .find("other.json: format is \"nvbench\", expected \"moba-report\""),
              std::string::npos)
        << message(dir / "other.json");
    EXPECT_NE(message(dir / "v2.json").find("v2.json: format_version 2, this build reads 1"),
              std::string::npos);
    EXPECT_NE(message(dir).find("is a directory"), std::string::npos) << message(dir);

    for (const char* bad :
         {"missing.json", "broken.json", "other.json", "v2.json", "no_timing.json"}) {
        EXPECT_EQ(cli::run_compare({good.string(), (dir / bad).string(), 5.0, ""}), 2) << bad;
        EXPECT_EQ(cli::run_compare({(dir / bad).string(), good.string(), 5.0, ""}), 2) << bad;
    }
    try {
        compare_reports(make_report({bench_record("naive", 1.0)}), no_timing, 0.05, "b.json",
                        "n.json");
        ADD_FAILURE() << "no error for a passed record without a median";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("n.json: /records/0/timing/median_ms"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(cli::run_compare(
                  {good.string(), good.string(), 5.0, (dir / "no" / "dir" / "x.md").string()}),
              2);
    fs::remove_all(dir);
}

// Nothing matched (the wrong files given to a CI gate): exit 1 naming both files and why,
// unless --allow-empty.
TEST(Compare, NothingMatchedExitsOneUnlessAllowed) {
    const fs::path dir = temp_dir();
    const std::string a =
        write_json(dir / "a.json", make_report({bench_record("naive", 1.0)})).string();
    const std::string b =
        write_json(dir / "b.json", make_report({bench_record("tiled_mma", 1.0)})).string();
    const std::string checks = write_json(dir / "checks.json", real_check_report()).string();
    const std::string empty = write_json(dir / "empty.json", make_report({})).string();
    EXPECT_EQ(cli::run_compare({a, b, 5.0, ""}), 1);
    EXPECT_EQ(cli::run_compare({a, b, 5.0, "", true}), 0);
    EXPECT_EQ(cli::run_compare({a, a, 5.0, ""}), 0);

    const Comparison c = compare_reports(load_report(a), load_report(b), 0.05, a, b);
    EXPECT_EQ(c.matched(), 0u);
    const std::string keys = empty_comparison_message(c, a, b);
    EXPECT_NE(keys.find("BASE " + a + " holds 1 records (1 bench, 0 check), NEW " + b +
                        " holds 1 records (1 bench, 0 check)"),
              std::string::npos)
        << keys;
    EXPECT_NE(keys.find("no record of one has the key of a record of the other"), std::string::npos)
        << keys;
    const Comparison kinds =
        compare_reports(load_report(a), load_report(checks), 0.05, a, checks);
    EXPECT_NE(empty_comparison_message(kinds, a, checks).find("different kinds"), std::string::npos);
    const Comparison none = compare_reports(load_report(empty), load_report(a), 0.05, empty, a);
    EXPECT_NE(empty_comparison_message(none, empty, a).find("one side has no bench or check"),
              std::string::npos);

    std::string out;
    EXPECT_EQ(run_moba("compare " + a + " " + b, &out), 1) << out;
    EXPECT_NE(out.find("nothing to compare: BASE " + a), std::string::npos) << out;
    EXPECT_NE(out.find("--allow-empty"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + a + " " + b + " --allow-empty", &out), 0) << out;
    EXPECT_EQ(run_moba("compare " + a + " " + checks, &out), 1) << out;
    fs::remove_all(dir);
}

// Two check reports compare their records' ratios and outcomes per (config, impl, check, tensor).
TEST(Compare, CheckReportsCompareRatiosAndOutcomes) {
    const json base = real_check_report();
    const Comparison self = compare_reports(base, base, kDefaultThreshold, "b", "n");
    ASSERT_EQ(self.check_pairs.size(), base["records"].size());
    EXPECT_EQ(self.count(CheckVerdict::same), self.check_pairs.size());
    EXPECT_FALSE(self.regression());
    EXPECT_TRUE(self.pairs.empty());

    // Records with a finite ratio that passed: one to turn incorrect, one to worsen, one to improve.
    std::vector<std::size_t> judged;
    for (std::size_t i = 0; i < base["records"].size(); ++i) {
        const json& r = base["records"][i];
        if (r["outcome"] == "passed" && r.contains("ratio") && r["ratio"].is_number())
            judged.push_back(i);
    }
    ASSERT_GE(judged.size(), 3u);
    json next = base;
    json& broken = next["records"][judged[0]];
    broken["outcome"] = "incorrect";
    broken["ratio"] = 3.5;
    broken["reason"] = "planted";
    const double worse_ratio = base["records"][judged[1]]["ratio"].get<double>() + 0.2;
    next["records"][judged[1]]["ratio"] = worse_ratio;
    json base_better = base;  // judged[2] was 0.3 higher in BASE: better now
    base_better["records"][judged[2]]["ratio"] =
        base["records"][judged[2]]["ratio"].get<double>() + 0.3;

    const Comparison c = compare_reports(base_better, next, kDefaultThreshold, "b.json", "n.json");
    EXPECT_EQ(c.count(CheckVerdict::regressed), 1u);
    EXPECT_EQ(c.count(CheckVerdict::worse), 1u);
    EXPECT_EQ(c.count(CheckVerdict::better), 1u);
    EXPECT_EQ(c.check_pairs[judged[0]].verdict, CheckVerdict::regressed);
    EXPECT_EQ(c.check_pairs[judged[1]].verdict, CheckVerdict::worse);
    EXPECT_DOUBLE_EQ(c.check_pairs[judged[1]].next_ratio, worse_ratio);
    EXPECT_TRUE(c.regression());
    const std::string text = comparison_text(c, "b.json", "n.json");
    EXPECT_NE(text.find(fmt::format("{} checks compared: 1 regressed, 1 worse, {} same, 1 better, "
                                    "0 fixed, 0 changed (threshold 5% of the bound on ratio)",
                                    c.check_pairs.size(), c.check_pairs.size() - 3)),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("regressed: "), std::string::npos) << text;
    EXPECT_EQ(text.find("compared: 0 faster"), std::string::npos) << text;  // no bench line
    // Swapped: the incorrect record is fixed, the worse one better, nothing regressed.
    const Comparison back = compare_reports(next, base, kDefaultThreshold, "n", "b");
    EXPECT_EQ(back.count(CheckVerdict::fixed), 1u);
    EXPECT_EQ(back.count(CheckVerdict::better), 1u);
    EXPECT_FALSE(back.regression());
    // A threshold above the rise: the ratio change is same; the outcome change still regresses.
    const Comparison loose = compare_reports(base, next, 0.25, "b", "n");
    EXPECT_EQ(loose.count(CheckVerdict::worse), 0u);
    EXPECT_EQ(loose.count(CheckVerdict::regressed), 1u);

    const fs::path dir = temp_dir();
    const std::string b = write_json(dir / "b.json", base).string();
    const std::string n = write_json(dir / "n.json", next).string();
    std::string out;
    EXPECT_EQ(run_moba("compare " + b + " " + b, &out), 0) << out;
    EXPECT_EQ(run_moba("compare " + b + " " + n, &out), 1) << out;
    EXPECT_NE(out.find("regressed"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + n + " " + b, &out), 0) << out;
    fs::remove_all(dir);

    EXPECT_EQ(judge_check(Outcome::passed, 0.1, Outcome::skipped, NAN, 0.05),
              CheckVerdict::changed);
    EXPECT_EQ(judge_check(Outcome::incorrect, 2.0, Outcome::failed, NAN, 0.05),
              CheckVerdict::same);
    EXPECT_EQ(judge_check(Outcome::passed, 0.50, Outcome::passed, 0.549, 0.05),
              CheckVerdict::same);
    EXPECT_EQ(judge_check(Outcome::passed, 0.50, Outcome::passed, 0.551, 0.05),
              CheckVerdict::worse);
}

// A failure that no pair judges is still a regression: a check record only in NEW that failed
// (an implementation BASE did not check, so it has no partner), and a bench record that passed
// in BASE and is incorrect in NEW. Records only in NEW that pass are not.
TEST(Compare, NewFailuresWithoutAPartnerAreARegression) {
    const json base = real_check_report();
    json next = base;
    json stray = base["records"][0];
    stray["impl"] = "newly_added";
    stray["outcome"] = "incorrect";
    stray["reason"] = "planted: out off by one row";
    next["records"].push_back(stray);
    const Comparison c = compare_reports(base, next, kDefaultThreshold, "b", "n");
    ASSERT_EQ(c.new_failures().size(), 1u);
    EXPECT_EQ(c.new_failures()[0].impl, "newly_added");
    EXPECT_TRUE(c.regression());
    const std::string text = comparison_text(c, "b", "n");
    EXPECT_NE(text.find("New failures, a regression: failing in NEW, not in BASE (1):"), std::string::npos) << text;
    EXPECT_NE(text.find("planted: out off by one row"), std::string::npos) << text;
    EXPECT_NE(comparison_markdown(c, "b", "n").find("### New failures, a regression"), std::string::npos);
    // The same record passing, only in NEW: listed, not a regression.
    next["records"].back()["outcome"] = "passed";
    EXPECT_FALSE(compare_reports(base, next, kDefaultThreshold, "b", "n").regression());

    json bench_base = make_report({bench_record("naive", 1.0)});
    json bench_next = bench_base;
    json& wrong = bench_next["records"][0];
    wrong["outcome"] = "incorrect";
    wrong["check_outcome"] = "incorrect";
    wrong["reason"] = "after timing, the last timed call's forward check on 32 sampled rows, out: ...";
    const Comparison b = compare_reports(bench_base, bench_next, kDefaultThreshold, "b", "n");
    ASSERT_EQ(b.new_failures().size(), 1u);
    EXPECT_TRUE(b.regression());
    // Incorrect in both: not new.
    EXPECT_TRUE(compare_reports(bench_next, bench_next, kDefaultThreshold, "b", "n").new_failures().empty());
}

// --threshold is in percent: 5 is 5%, 0.05 is 0.05%. A 3% slowdown beyond the noise is
// ambiguous under the default 5 and slower under 2 or 0.05.
TEST(Compare, ThresholdIsInPercent) {
    const fs::path dir = temp_dir();
    const std::string base =
        write_json(dir / "base.json", make_report({bench_record("naive", 1.0, 0.001)})).string();
    const std::string slow =
        write_json(dir / "slow.json", make_report({bench_record("naive", 1.03, 0.001)})).string();
    EXPECT_EQ(cli::run_compare({base, slow, 5.0, ""}), 0);
    EXPECT_EQ(cli::run_compare({base, slow, 2.0, ""}), 1);
    EXPECT_EQ(cli::run_compare({base, slow, 0.05, ""}), 1);
    std::string out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow, &out), 0) << out;
    EXPECT_NE(out.find("ambiguous"), std::string::npos) << out;
    EXPECT_NE(out.find("(threshold 5%"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow + " --threshold 0.05", &out), 1) << out;
    EXPECT_NE(out.find("(threshold 0.05%"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow + " --threshold 4", &out), 0) << out;
    EXPECT_EQ(run_moba("compare --help", &out), 0) << out;
    EXPECT_NE(out.find("5 means 5%, 0.05 means 0.05%"), std::string::npos) << out;
    fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Export

json export_fixture() {
    json bench = bench_record("naive", 1.23456, 0.01, config({4096, 100}));
    bench["tflops"] = 12.5;
    bench["ideal_speedup"] = 2.5;
    json check = {{"kind", "check"},
                  {"config",
                   {{"seqlens", {17}},
                    {"heads_q", 2},
                    {"heads_kv", 2},
                    {"layout", "MHA"},
                    {"head_dim", 16},
                    {"block", 4},
                    {"topk", 2},
                    {"dtype", "fp32"}}},
                  {"impl", "cpu_baseline"},
                  {"check", "forward"},
                  {"tensor", "out"},
                  {"max_abs_err", 3.5e-07},
                  {"ratio", nullptr},
                  {"outcome", "failed"},
                  {"reason", "NaN in out"}};
    json odd = {{"kind", "bench"}, {"impl", "a,\"b\"|c"}, {"phase", "bwd"}, {"outcome", "skipped"}};
    return make_report({bench, check, odd});
}

TEST(Export, CsvRowsExactly) {
    EXPECT_EQ(export_csv(export_fixture()),
              "layout,seqlens,heads,kv_heads,head_dim,block,topk,dtype,impl,phase/"
              "check,tensor,median_ms,tflops,"
              "speedup_vs_dense,ideal_speedup,peak_memory_bytes,max_abs_err,ratio,outcome\r\n"
              "GQA,\"4096,100\",8,2,128,512,3,bf16,naive,fwd,,1.23456,12.5,,2.5,1048576,,,passed\r\n"
              "MHA,17,2,2,16,4,2,fp32,cpu_baseline,forward,out,,,,,,3.5e-07,,failed\r\n"
              ",,,,,,,,\"a,\"\"b\"\"|c\",bwd,,,,,,,,,skipped\r\n");
    EXPECT_EQ(csv_field("plain"), "plain");
    EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
    EXPECT_EQ(csv_field(""), "");
}

TEST(Export, MarkdownRowsExactly) {
    EXPECT_EQ(
        export_markdown(export_fixture()),
        "| layout | seqlens | heads | kv_heads | head_dim | block | topk | dtype | impl | "
        "phase/check | tensor | "
        "median_ms | tflops | speedup_vs_dense | ideal_speedup | peak_memory_bytes | max_abs_err | ratio | outcome |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | ---: | "
        "---: | ---: | ---: | "
        "---: | ---: | --- |\n"
        "| GQA | 4096,100 | 8 | 2 | 128 | 512 | 3 | bf16 | naive | fwd |  | 1.235 | 12.5 |  | 2.5 "
        "| 1048576 |  |  | "
        "passed |\n"
        "| MHA | 17 | 2 | 2 | 16 | 4 | 2 | fp32 | cpu_baseline | forward | out |  |  |  |  |  | "
        "3.5e-07 |  | "
        "failed |\n"
        "|  |  |  |  |  |  |  |  | a,\"b\"\\|c | bwd |  |  |  |  |  |  |  |  | skipped |\n");
}

TEST(Export, CommandWritesTheFiles) {
    const fs::path dir = temp_dir();
    const json doc = export_fixture();
    const fs::path report = write_json(dir / "r.json", doc);
    EXPECT_EQ(cli::run_export({report.string(), (dir / "r.csv").string(), (dir / "r.md").string()}),
              0);
    EXPECT_EQ(read_text(dir / "r.csv"), export_csv(doc));
    EXPECT_EQ(read_text(dir / "r.md"), export_markdown(doc));
    EXPECT_EQ(cli::run_export({report.string(), "", ""}), 2);  // nothing asked for
    EXPECT_EQ(cli::run_export({(dir / "missing.json").string(), (dir / "x.csv").string(), ""}), 2);
    EXPECT_FALSE(fs::exists(dir / "x.csv"));
    fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// The binary: the subcommands are wired into `moba`.

int run_moba(const std::string& args, std::string* output) {
    const fs::path log =
        fs::temp_directory_path() / ("moba_report_tools_" + std::to_string(::getpid()) + ".log");
    const int raw = std::system(
        (std::string(MOBA_BINARY) + " " + args + " > " + log.string() + " 2>&1").c_str());
    if (output) *output = read_text(log);
    fs::remove(log);
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

TEST(Binary, CompareAndExportExitStatus) {
    const fs::path dir = temp_dir();
    const std::string base =
        write_json(dir / "base.json", make_report({bench_record("naive", 1.0)})).string();
    const std::string slow =
        write_json(dir / "slow.json", make_report({bench_record("naive", 1.3)})).string();
    std::string out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow, &out), 1) << out;
    EXPECT_NE(out.find("slower"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + slow + " " + base, &out), 0) << out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow + " --threshold 50", &out), 0) << out;
    EXPECT_EQ(run_moba("compare " + base + " " + (dir / "nope.json").string(), &out), 2) << out;
    EXPECT_NE(out.find("nope.json: cannot read"), std::string::npos) << out;
    EXPECT_EQ(run_moba("compare " + base, &out), 2) << out;
    EXPECT_EQ(run_moba("compare " + base + " " + slow + " --threshold -1", &out), 2) << out;
    EXPECT_EQ(run_moba("export " + base + " --csv -", &out), 0) << out;
    EXPECT_EQ(out, export_csv(load_report(base)));
    EXPECT_EQ(run_moba("export " + base, &out), 2) << out;
    EXPECT_EQ(run_moba("compare --help", &out), 0) << out;
    EXPECT_NE(out.find("noise  = max(1%, sqrt(base.rel_stddev^2 + new.rel_stddev^2))"),
              std::string::npos)
        << out;
    fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Typed records (harness/records.hpp): each kind built through its struct validates against
// the schema, and its one writer gives exactly the format's fields.

CheckCase records_state() {
    Problem p;
    p.seqlens = {4096};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 512;
    p.topk = 3;
    p.dtype = DType::bf16;
    return {p, 1};
}

// records_state() as "config" holds it: config() with the problem's own scale (config()'s
// literal is a rounding of 1/sqrt(128) that no writer produces).
json records_config() {
    json c = config();
    c["scale"] = records_state().problem.scale();
    c["inputs"] = "normal";
    return c;
}

CheckRecord typed_check_record(const std::string& check, const std::string& tensor, Outcome outcome) {
    CheckRecord r;
    r.config = records_state();
    r.impl = "naive";
    r.check = check;
    r.tensor = tensor;
    r.reference = ReferenceKind::gpu;
    r.command = "moba check --seqlens 4096 --impl naive --reference gpu";
    r.outcome = outcome;
    r.reason = outcome == Outcome::passed ? "" : "why";
    return r;
}

TensorCheck tensor_figures() {
    TensorCheck t;
    t.tensor = "out";
    t.max_abs_err = 0.001;
    t.rel_l2_err = std::nan("");  // written null
    t.baseline_max_abs_err = 0.002;
    t.baseline_rel_l2_err = 0.0005;
    t.bound = 0.006;
    t.ratio = 1.0 / 6;
    t.nonfinite = 2;
    return t;
}

// A timed record of `impl` at records_state(): median 2 ms, the clock falling from 1980 MHz.
BenchRecord typed_bench_record(const std::string& impl, GatingMode gating) {
    BenchRecord r = bench_record_skeleton(records_state(), *find_implementation(impl), Phase::fwd, gating);
    BenchMeasurement m;
    m.check_worst_ratio = 0.25;
    m.timing = summarize({2.0, 1.9, 2.1});
    m.timing.warmup = 2;
    m.timing.stop = "converged";
    m.timing.clock = {1980, 1700, 0};
    if (r.gating == "separate") m.gating_ms = 0.1;
    m.peak_memory_bytes = 1 << 20;
    m.allocated_memory_bytes = 3 << 19;
    m.memory_disturbed = "measured 96 MiB less than the harness allocated";  // the optional field validates too
    r.measured = m;
    r.check_outcome = Outcome::passed;
    r.outcome = Outcome::passed;
    return r;
}

TEST(Records, EveryKindBuiltThroughItsStructValidates) {
    CheckRecord tensor = typed_check_record("forward", "out", Outcome::incorrect);
    tensor.tensor_figures = tensor_figures();
    CheckRecord baseline = typed_check_record("backward", "dq", Outcome::passed);
    baseline.tensor_figures = tensor_figures();
    baseline.bound_kind = "rel_l2 <= 4u";
    CheckRecord gating = typed_check_record("gating", "selection", Outcome::passed);
    gating.gating_figures = GatingCheck{};
    gating.gating_figures->pairs = 100;
    const CheckRecord not_run = typed_check_record("forward", "", Outcome::not_supported);
    const CheckRecord failed = typed_check_record("reference", "", Outcome::failed);

    const BenchRecord skipped =
        bench_record_skeleton(records_state(), *find_implementation("naive"), Phase::bwd, GatingMode::separate);
    BenchRecord timed = typed_bench_record("naive", GatingMode::separate);
    timed.dense_impl = "dense_cublas";
    timed.speedup_vs_dense = 2.5;
    timed.published = PublishedFigures{"2a", 100.0, 20.0, 5.0};
    BenchRecord not_timed = skipped;
    not_timed.outcome = Outcome::failed;
    not_timed.check_outcome = Outcome::failed;
    not_timed.reason = "out of memory";

    json doc = make_report({tensor, baseline, gating, not_run, failed, skipped, timed,
                            typed_bench_record("dense_cublas", GatingMode::included), not_timed},
                           "check");
    const auto errors = schema().validate(doc);
    EXPECT_TRUE(errors.empty()) << joined(errors);
    EXPECT_EQ(doc["summary"]["passed"], 4);
    EXPECT_EQ(doc["summary"]["not supported"], 1);

    // A passed bench record without its measurement is no valid record.
    BenchRecord unmeasured = timed;
    unmeasured.measured.reset();
    expect_error(make_report({unmeasured}), "/records/0: required property 'timing' is missing");
    // Nor a gating record without its figures.
    expect_error(make_report({typed_check_record("gating", "selection", Outcome::passed)}, "check"),
                 "/records/0: required property 'pairs' is missing");
}

TEST(Records, CheckRecordWritesTheFormatsFields) {
    CheckRecord r = typed_check_record("forward", "out", Outcome::incorrect);
    r.tensor_figures = tensor_figures();
    const json expected = {{"kind", "check"},
                           {"config", records_config()},
                           {"impl", "naive"},
                           {"check", "forward"},
                           {"tensor", "out"},
                           {"reference", "gpu"},
                           {"command", "moba check --seqlens 4096 --impl naive --reference gpu"},
                           {"max_abs_err", 0.001},
                           {"rel_l2_err", nullptr},
                           {"baseline_max_abs_err", 0.002},
                           {"baseline_rel_l2_err", 0.0005},
                           {"bound", 0.006},
                           {"ratio", 1.0 / 6},
                           {"max_abs_ratio", 0.0},
                           {"region_ratio", 0.0},
                           {"worst_region", -1},
                           {"rel_l2_bound", 0.0},
                           {"rel_l2_ratio", 0.0},
                           {"nonfinite", 2},
                           {"outcome", "incorrect"},
                           {"reason", "why"}};
    EXPECT_EQ(json(r), expected) << json(r).dump(1);

    CheckRecord g = typed_check_record("gating", "selection", Outcome::passed);
    g.gating_figures = GatingCheck{};
    g.gating_figures->pairs = 7;
    g.gating_figures->near_ties = 1;
    g.bound_kind = "why not";
    json got = g;
    EXPECT_EQ(got["pairs"], 7);
    EXPECT_EQ(got["near_ties"], 1);
    EXPECT_EQ(got["bound_kind"], "why not");
    for (const char* key : {"max_abs_err", "ratio", "nonfinite"}) EXPECT_FALSE(got.contains(key)) << key;
    EXPECT_EQ(got["block_means"], "exact");
    EXPECT_EQ(got["rounding_mismatches"], 0);
    EXPECT_EQ(got.size(), 9u + 10u + 1u) << got.dump(1);  // common fields, gating figures, bound_kind
}

TEST(Records, BenchRecordWritesTheFormatsFields) {
    const BenchRecord r = typed_bench_record("naive", GatingMode::separate);
    ASSERT_EQ(r.gating, "separate");
    const json got = r;
    const json expected = {{"kind", "bench"},
                           {"config", records_config()},
                           {"impl", "naive"},
                           {"dense", false},
                           {"phase", "fwd"},
                           {"gating", "separate"},
                           {"pairs", static_cast<std::int64_t>(r.pairs)},
                           {"dense_pairs", std::int64_t{8} * 4096 * 4097 / 2},
                           {"ideal_speedup", r.dense_pairs / r.pairs},
                           {"flops", r.flops},
                           {"gating_flops", r.gating_flops},
                           {"dense_impl", nullptr},
                           {"speedup_vs_dense", nullptr},
                           {"check_outcome", "passed"},
                           {"outcome", "passed"},
                           {"reason", ""},
                           {"command", bench_command(records_state(), "naive", Phase::fwd, GatingMode::separate)},
                           {"check_worst_ratio", 0.25},
                           {"timing", timing_json(r.measured->timing)},
                           {"tflops", r.flops / 2e-3 / 1e12},
                           {"gating_ms", 0.1},
                           {"peak_memory_bytes", 1 << 20},
                           {"allocated_memory_bytes", 3 << 19},
                           {"memory_disturbed", "measured 96 MiB less than the harness allocated"},
                           {"sm_clock_start_mhz", 1980},
                           {"sm_clock_end_mhz", 1700},
                           {"throttle_reasons", 0},
                           {"throttled", true}};  // 1700 < 0.9 * 1980
    EXPECT_EQ(got, expected) << got.dump(1);
    EXPECT_EQ(got["timing"]["median_ms"], 2.0);
    // An implementation without gating: gating "none", gating_flops still a real number.
    const json dense = bench_record_skeleton(records_state(), *find_implementation("dense_cublas"), Phase::fwd,
                                             GatingMode::separate);
    EXPECT_EQ(dense["gating"], "none");
    EXPECT_EQ(dense["gating_flops"].dump(), "0.0");
    EXPECT_FALSE(dense.contains("timing"));
}

// Every key any writer puts in a report (envelope, records of both kinds with every optional
// part, nested objects) is documented in reports/FORMAT.md, as `key` or "key".
void collect_keys(const json& j, std::set<std::string>& keys) {
    if (j.is_object()) {
        for (const auto& [key, value] : j.items()) {
            keys.insert(key);
            collect_keys(value, keys);
        }
    } else if (j.is_array()) {
        for (const json& x : j) collect_keys(x, keys);
    }
}

TEST(Records, FormatDocumentsEveryKeyWritten) {
    const std::string format = read_text(fs::path(MOBA_SCHEMA_PATH).parent_path() / "FORMAT.md");
    ASSERT_FALSE(format.empty());
    // `moba check` without a GPU: gating, forward, backward, zero-sparsity and the baseline's
    // records (bound_kind), as run_checks writes them.
    const json checks = real_check_report();
    CheckRecord sanitizer = typed_check_record("sanitizer", "", Outcome::incorrect);
    sanitizer.sanitizer_figures = CheckRecord::Sanitizer{
        "racecheck", 1, 3, {"Error: Race reported between Write access at k+0x10\nand Read access at k+0x20"}};
    // A bench record with every optional part.
    BenchRecord bench = typed_bench_record("naive", GatingMode::separate);
    bench.dense_impl = "dense_cublas";
    bench.speedup_vs_dense = 2.5;
    bench.check_selection = "own";
    bench.check_rows = 8;
    bench.gating_check = GatingCheck{};
    bench.backward_check = BackwardCheckFigures{};
    bench.backward_check->key_blocks.push_back(KeyBlock{0, 1, 10, 640.0});
    bench.published = PublishedFigures{"2a", 100.0, 20.0, 5.0};
    const json doc = make_report({sanitizer, bench}, "bench");

    std::set<std::string> keys;
    collect_keys(checks, keys);
    collect_keys(doc, keys);
    ASSERT_TRUE(keys.count("bound_kind")) << "the CPU checks no longer write bound_kind";
    ASSERT_TRUE(keys.count("work_budget"));
    ASSERT_TRUE(keys.count("sanitizer_findings")) << "a sanitizer record no longer writes its findings";
    for (const std::string& key : keys)
        EXPECT_TRUE(format.find("`" + key + "`") != std::string::npos ||
                    format.find("\"" + key + "\"") != std::string::npos)
            << "reports/FORMAT.md does not document \"" << key << "\"";
    const auto errors = schema().validate(doc);
    EXPECT_TRUE(errors.empty()) << joined(errors);
}

TEST(Records, CheckAndBenchShareOneConfigWriter) {
    const CheckCase state = records_state();
    const json check = typed_check_record("forward", "out", Outcome::passed);
    const json bench = bench_record_skeleton(state, *find_implementation("naive"), Phase::fwd, GatingMode::included);
    EXPECT_EQ(check["config"], config_json(state));
    EXPECT_EQ(bench["config"], config_json(state));
    EXPECT_EQ(config_json(state), records_config()) << config_json(state).dump(1);
}

}  // namespace
}  // namespace moba
