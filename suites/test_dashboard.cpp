// `moba dashboard`: which files it reads, how bad input is sorted out, the view data computed
// from reports (Figure 2, history verdicts, correctness), and the binary's exit statuses.
// The page itself is tested in a browser by dashboard_browser_test.sh.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "harness/dashboard_inputs.hpp"
#include "harness/dashboard_views.hpp"
#include "harness/schema.hpp"
#include "suites/binary_run.hpp"

namespace moba {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = MOBA_DASHBOARD_FIXTURES;

using moba::test::scratch;

// A report as the views read it (they run after validation, so only the fields they use).
json report(const std::string& sha, const std::string& started, json records) {
    return {
        {"format", "moba-report"},
        {"format_version", 1},
        {"complete", true},
        {"meta", {{"tool", "bench"}, {"git_sha", sha}, {"git_dirty", false}, {"started", started}}},
        {"device", {{"present", true}, {"name", "GPU X"}}},
        {"records", std::move(records)}};
}

json bench(double median, double min, double max, double rel_stddev) {
    return {
        {"kind", "bench"},
        {"config",
         {{"seqlens", {8192}},
          {"total_tokens", 8192},
          {"heads_q", 16},
          {"heads_kv", 4},
          {"layout", "GQA"},
          {"head_dim", 128},
          {"block", 512},
          {"topk", 8},
          {"dtype", "bf16"},
          {"seed", 1}}},
        {"impl", "tiled_mma"},
        {"phase", "fwd"},
        {"gating", "included"},
        {"outcome", "passed"},
        {"tflops", 100.0},
        {"timing",
         {{"median_ms", median}, {"min_ms", min}, {"max_ms", max}, {"rel_stddev", rel_stddev}}}};
}

TEST(DashboardInputs, FoldersAreWalkedForReportsOnly) {
    const fs::path dir = scratch("dashboard_walk");
    fs::remove_all(dir);
    fs::create_directories(dir / "sub");
    for (const char* name : {"b.json", "a.json", "sub/c.json.gz", "notes.md", "sub/log.txt", "moba-report.schema.json"})
        std::ofstream(dir / name) << "{}";
    const auto files = report_files({dir.string()});
    ASSERT_EQ(files.size(), 3u) << "a JSON Schema inside a folder is not a report";
    EXPECT_EQ(files[0].filename(), "a.json");
    EXPECT_EQ(files[1].filename(), "b.json");
    EXPECT_EQ(files[2].filename(), "c.json.gz");
    // Named on the command line, it is read (and judged).
    EXPECT_EQ(report_files({(dir / "moba-report.schema.json").string()}).size(), 1u);
    try {
        report_files({(dir / "missing.json").string()});
        ADD_FAILURE() << "a missing input must be refused";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("missing.json: no such file"), std::string::npos)
            << e.what();
    }
    fs::remove_all(dir);
}

TEST(DashboardInputs, BadReportsAreListedAndTheOthersKept) {
    const SchemaValidator schema = SchemaValidator::from_file(MOBA_SCHEMA_PATH);
    const DashboardInputs in = read_dashboard_inputs(report_files({kFixtures.string()}), schema);
    EXPECT_EQ(in.reports.size(), 6u);
    ASSERT_EQ(in.problems.size(), 3u);
    EXPECT_TRUE(in.any_invalid());
    for (const DashboardProblem& p : in.problems) {
        const std::string name = fs::path(p.path).filename().string();
        if (name == "compressed.json.gz") {
            EXPECT_EQ(p.kind, "skipped");
            EXPECT_NE(p.message.find("gzip"), std::string::npos);
        } else if (name == "format-version-2.json") {
            EXPECT_EQ(p.kind, "invalid");
            EXPECT_EQ(p.message, "format_version 2, this build reads 1");
        } else {
            EXPECT_EQ(name, "invalid-outcome.json");
            EXPECT_EQ(p.kind, "invalid");
            ASSERT_EQ(p.details.size(), 1u);
            EXPECT_NE(p.details[0].find("/records/0/outcome"), std::string::npos) << p.details[0];
        }
    }
}

TEST(DashboardViews, HistoryJudgesEachPointAgainstThePreviousOne) {
    DashboardInputs in;
    // 10 ms, then 10.05 ms (within the 1% noise floor: same), then 12 ms outside both ranges
    // (slower), at three commits; a key measured at one commit only is not tracked.
    in.reports.push_back(
        {"a.json", report("aaaaaaa1", "2026-01-01T00:00:00Z", {bench(10, 9.9, 10.1, 0.002)})});
    in.reports.push_back(
        {"b.json", report("bbbbbbb2", "2026-01-02T00:00:00Z", {bench(10.05, 9.95, 10.15, 0.002)})});
    json once = bench(5, 5, 5, 0);
    once["impl"] = "wgmma_moba";
    in.reports.push_back({"c.json", report("ccccccc3", "2026-01-03T00:00:00Z",
                                           {bench(12, 11.9, 12.1, 0.002), once})});
    const json data = dashboard_data(in, 0.05);
    const json& history = data["history"];
    ASSERT_EQ(history.size(), 3u) << history.dump(1);
    EXPECT_EQ(history[0]["verdict"], "first");
    EXPECT_EQ(history[1]["verdict"], "same");
    EXPECT_EQ(history[2]["verdict"], "slower");
    EXPECT_EQ(history[2]["commit"], "ccccccc");
    EXPECT_NEAR(history[2]["change"].get<double>(), 12 / 10.05 - 1, 1e-12);
    // Throughput keeps the latest record of each configuration: the 12 ms one and the once.
    EXPECT_EQ(data["throughput"].size(), 2u);
    // Every two reports sharing a key are compared, the older as BASE.
    ASSERT_EQ(data["comparisons"].size(), 3u);
    EXPECT_EQ(data["comparisons"][1]["counts"]["slower"], 1) << data["comparisons"][1].dump(1);
}

TEST(DashboardViews, FigureTwoHasOursPublishedAndIdeal) {
    json moba = bench(60, 59, 61, 0.01);
    moba["impl"] = "wgmma_moba";  // sorts after wgmma_dense: the ideal must still be MoBA's
    moba.update({{"dense", false},
                 {"speedup_vs_dense", 4.0},
                 {"pairs", 100.0},
                 {"dense_pairs", 600.0},
                 {"published",
                  {{"figure", "2a"}, {"moba_ms", 60.6}, {"dense_ms", 236.1}, {"speedup", 3.9}}}});
    json dense = moba;
    dense.update({{"impl", "wgmma_dense"},
                  {"dense", true},
                  {"gating", "none"},
                  {"speedup_vs_dense", 1.0},
                  {"pairs", 600.0}});
    DashboardInputs in;
    in.reports.push_back({"p.json", report("aaaaaaa1", "2026-01-01T00:00:00Z", {moba, dense})});
    const json fig2 = dashboard_data(in, 0.05)["fig2"];
    std::map<std::string, double> time, speedup;
    for (const json& r : fig2["time"]) time[r["series"]] = r["value"];
    for (const json& r : fig2["speedup"]) speedup[r["series"]] = r["value"];
    EXPECT_EQ(time, (std::map<std::string, double>{{"ours: wgmma_moba", 60},
                                                   {"ours: wgmma_dense", 60},
                                                   {"published: MoBA", 60.6},
                                                   {"published: full attention", 236.1}}));
    // The dense implementation has no speedup of its own; ideal = dense pairs / pairs.
    EXPECT_EQ(speedup, (std::map<std::string, double>{
                           {"ours: wgmma_moba", 4.0}, {"published", 3.9}, {"ideal", 6.0}}));
}

TEST(DashboardViews, IncorrectRecordsAndWorstRatios) {
    json pass = {{"kind", "check"},    {"config", json::object()}, {"impl", "naive"},
                 {"check", "forward"}, {"tensor", "out"},          {"outcome", "passed"},
                 {"ratio", 0.4}};
    json fail = pass;
    fail.update({{"outcome", "incorrect"}, {"ratio", 1.7}, {"reason", "out of bound"}});
    json gating = {{"kind", "check"},   {"config", json::object()}, {"impl", "naive"},
                   {"check", "gating"}, {"tensor", "selection"},    {"outcome", "passed"},
                   {"near_ties", 3},    {"mismatches", 0}};
    DashboardInputs in;
    in.reports.push_back(
        {"c.json", report("aaaaaaa1", "2026-01-01T00:00:00Z", {pass, fail, gating})});
    const json c = dashboard_data(in, 0.05)["correctness"];
    ASSERT_EQ(c["bad"].size(), 1u);
    EXPECT_EQ(c["bad"][0]["index"], 1);
    EXPECT_EQ(c["bad"][0]["reason"], "out of bound");
    ASSERT_EQ(c["worst"].size(), 1u);  // gating records carry no ratio
    EXPECT_EQ(c["worst"][0]["worst_ratio"], 1.7);
    EXPECT_EQ(c["worst"][0]["records"], 2);
    ASSERT_EQ(c["ties"].size(), 1u);
    EXPECT_EQ(c["ties"][0]["near_ties"], 3.0);
    EXPECT_EQ(c["outcomes"].size(), 2u);  // passed and incorrect
}

int run_moba(const std::string& args, std::string* output = nullptr) {
    moba::test::BinaryRun run = moba::test::run_binary(MOBA_BINARY, args, "dashboard_cli.log");
    if (output) *output = std::move(run.output);
    return run.status;
}

TEST(DashboardBinary, ExitStatuses) {
    const fs::path out = scratch("dashboard_site");
    fs::remove_all(out);
    std::string text;
    EXPECT_EQ(run_moba("dashboard /nonexistent/r.json --out " + out.string(), &text), 2) << text;
    EXPECT_NE(text.find("/nonexistent/r.json: no such file"), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(out)) << "a refused run must write nothing";
    EXPECT_EQ(
        run_moba("dashboard " + kFixtures.string() + " --out " + out.string() + " --colour", &text),
        2)
        << text;
    // The bad fixtures: exit 1, the site written all the same.
    EXPECT_EQ(run_moba("dashboard " + kFixtures.string() + " --out " + out.string(), &text), 1)
        << text;
    EXPECT_TRUE(fs::exists(out / "index.html"));
    EXPECT_TRUE(fs::exists(out / "vendor" / "vega-lite.min.js"));
    std::ifstream data(out / "data.js");
    std::string js((std::istreambuf_iterator<char>(data)), std::istreambuf_iterator<char>());
    EXPECT_EQ(js.rfind("window.MOBA_DASHBOARD = ", 0), 0u);
    EXPECT_NE(js.find("format-version-2.json"), std::string::npos);
    // Only good reports: exit 0.
    EXPECT_EQ(
        run_moba("dashboard " + (kFixtures / "paper-2b-wgmma-4450f5d.json").string() + " " +
                     (kFixtures / "dense-32k-aee7055.json").string() + " --out " + out.string(),
                 &text),
        0)
        << text;
    fs::remove_all(out);
}

}  // namespace
}  // namespace moba
