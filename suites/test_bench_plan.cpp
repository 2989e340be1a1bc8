// Speed accounting and sweep planning (CPU): pair counts against brute force, FLOP rules of
// SEMANTICS.md §6, timing statistics, sweep axes, grid files with their errors, resume keys.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "test_util.hpp"

#include "harness/cli/bench_command.hpp"
#include "harness/cli/paper_command.hpp"
#include "harness/bench.hpp"
#include "harness/flops.hpp"
#include "harness/report.hpp"
#include "harness/schema.hpp"
#include "harness/timer.hpp"

namespace moba {
namespace {

// Attended pairs by enumeration: query i sees its own block's keys j <= i and k-1 full past blocks.
double brute_pairs(const Problem& p) {
    double pairs = 0;
    for (int len : p.seqlens)
        for (int i = 0; i < len; ++i) {
            const int own = i / p.block;
            const int past = std::min(p.topk - 1, own);
            pairs += past * p.block + (i - own * p.block + 1);
        }
    return pairs * p.heads_q;
}

TEST(Flops, MobaPairsMatchEnumeration) {
    for (auto [lens, block, topk] : {std::tuple{std::vector<int>{1}, 16, 1}, std::tuple{std::vector<int>{113}, 32, 3},
                                     std::tuple{std::vector<int>{1000, 17, 2049, 1}, 128, 3},
                                     std::tuple{std::vector<int>{4097}, 256, 17}, std::tuple{std::vector<int>{65}, 8, 100}}) {
        Problem p;
        p.seqlens = lens;
        p.heads_q = 3;
        p.heads_kv = 1;
        p.head_dim = 64;
        p.block = block;
        p.topk = topk;
        EXPECT_DOUBLE_EQ(moba_pairs(p), brute_pairs(p));
        if (p.zero_sparsity()) EXPECT_DOUBLE_EQ(moba_pairs(p), dense_pairs(p));
        else EXPECT_LT(moba_pairs(p), dense_pairs(p));
    }
}

TEST(Flops, PhaseMultipliers) {
    Problem p;
    p.seqlens = {10};
    p.heads_q = p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 4;
    p.topk = 1;
    EXPECT_DOUBLE_EQ(attention_flops(p, 100, Phase::fwd), 4.0 * 128 * 100);
    EXPECT_DOUBLE_EQ(attention_flops(p, 100, Phase::bwd), 2.5 * 4.0 * 128 * 100);
    EXPECT_DOUBLE_EQ(attention_flops(p, 100, Phase::fwdbwd), 3.5 * 4.0 * 128 * 100);
    // Dense causal pairs: L (L + 1) / 2 per head.
    EXPECT_DOUBLE_EQ(dense_pairs(p), 2 * 55.0);
    // Gating: means 10 tokens x 2 kv heads x 128; scores 2 x 128 per past block, query, head:
    // blocks [0,4) [4,8) [8,10) -> past blocks per query 0x4 + 1x4 + 2x2 = 8.
    EXPECT_DOUBLE_EQ(gating_flops(p), 10 * 2 * 128 + 2.0 * 128 * 8 * 2);
    EXPECT_EQ(parse_phase("fwdbwd"), Phase::fwdbwd);
    EXPECT_THROW(parse_phase("forward"), std::invalid_argument);
}

TEST(Timer, SummaryStatistics) {
    const Timing t = summarize({4.0, 1.0, 3.0, 2.0});
    EXPECT_DOUBLE_EQ(t.median_ms, 2.5);
    EXPECT_DOUBLE_EQ(t.min_ms, 1.0);
    EXPECT_DOUBLE_EQ(t.max_ms, 4.0);
    EXPECT_DOUBLE_EQ(t.mean_ms, 2.5);
    EXPECT_NEAR(t.rel_stddev, std::sqrt(5.0 / 3.0) / 2.5, 1e-12);
    EXPECT_DOUBLE_EQ(summarize({7.0}).rel_stddev, 0.0);
}

namespace fs = std::filesystem;

std::string write_temp(const std::string& name, const std::string& text) {
    const fs::path path = fs::temp_directory_path() / name;
    std::ofstream(path) << text;
    return path.string();
}

using test::expect_error;

TEST(BenchPlan, AxesMakeTheCartesianProduct) {
    cli::BenchFlags f;
    f.seqlen = "8K,32K";
    f.heads = "16";
    f.kv_heads = "16,4,1";
    f.impl = "naive";
    f.phase = "fwd,fwdbwd";
    const auto plan = cli::plan_bench(f);
    ASSERT_EQ(plan.states.size(), 6u);
    EXPECT_EQ(plan.states[0].problem.seqlens, std::vector<int>{8192});
    EXPECT_EQ(plan.states[5].problem.seqlens, std::vector<int>{32768});
    EXPECT_EQ(plan.states[2].problem.heads_kv, 1);
    EXPECT_EQ(plan.options.phases.size(), 2u);
}

TEST(BenchPlan, BadValuesAreNamed) {
    auto with = [](auto change) {
        cli::BenchFlags f;
        f.seqlen = "1K";
        change(f);
        return f;
    };
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.kv_heads = "3"; })); }, "not divisible by kv heads 3");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.phase = "fwd,back"; })); }, "'back'");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.gating = "inside"; })); }, "'inside'");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.block = "0"; })); }, "'0'");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.dtype = "bf16,int4"; })); }, "'int4'");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.seqlens = "5"; })); }, "not both");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.max_seconds = 0; })); }, "--max-seconds");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.impl = "fastest"; })); }, "'fastest'");
    expect_error([&] { cli::plan_bench(with([](cli::BenchFlags& f) { f.warmup = -1; })); }, "--warmup -1");
    EXPECT_EQ(cli::plan_bench(with([](cli::BenchFlags& f) { f.warmup = 0; })).options.timing.warmup, 0);
}

TEST(BenchPlan, GridFileSetsAxesAndRejectsUnknownKeys) {
    cli::BenchFlags f;
    f.grid = write_temp("moba_grid_ok.json",
                        R"({"seqlen": ["8K", 16384], "kv_heads": [16, 1], "topk": 8, "impl": "naive", "phase": ["fwd"]})");
    const auto plan = cli::plan_bench(f);
    ASSERT_EQ(plan.states.size(), 4u);
    EXPECT_EQ(plan.states[3].problem.seqlens, std::vector<int>{16384});
    EXPECT_EQ(plan.states[3].problem.heads_kv, 1);
    EXPECT_EQ(plan.states[0].problem.topk, 8);

    cli::BenchFlags g;
    g.grid = write_temp("moba_grid_bad_key.json", R"({"seqlen": [1024], "kvheads": [1]})");
    expect_error([&] { cli::plan_bench(g); }, "unknown key 'kvheads'");
    g.grid = write_temp("moba_grid_bad_value.json", R"({"seqlen": [1024], "topk": [1.5]})");
    expect_error([&] { cli::plan_bench(g); }, "1.5");
    g.grid = write_temp("moba_grid_bad_json.json", R"({"seqlen": [1024],)");
    expect_error([&] { cli::plan_bench(g); }, "not valid JSON");
    g.grid = "/nonexistent/grid.json";
    expect_error([&] { cli::plan_bench(g); }, "cannot read grid file");
    g.grid = write_temp("moba_grid_empty_list.json", R"({"seqlen": []})");
    expect_error([&] { cli::plan_bench(g); }, "empty list");
}

// A flag that would be dropped silently is an error naming it.
TEST(BenchPlan, FlagsThatDoNotApplyAreErrors) {
    cli::BenchFlags f;
    f.seqlens = "4096,1000";
    f.batch = 4;
    f.given = {"--seqlens", "--batch"};
    expect_error([&] { cli::plan_bench(f); }, "--batch applies only with --seqlen");
    cli::BenchFlags g;
    g.heads = "8";
    g.given = {"--heads"};
    g.grid = write_temp("moba_grid_and_flag.json", R"({"seqlen": [1024], "heads": [4]})");
    expect_error([&] { cli::plan_bench(g); }, "sets 'heads' and --heads is given too");
    g.given = {"--impl"};
    EXPECT_EQ(cli::plan_bench(g).states.size(), 1u);
}

TEST(BenchPlan, ResumeKeyIgnoresMeasurementsOnly) {
    const nlohmann::json a = {{"config", {{"seqlens", {8192}}, {"seed", 1}}}, {"impl", "naive"}, {"phase", "fwd"},
                              {"gating", "separate"}, {"timing", {{"median_ms", 1.0}}}};
    nlohmann::json b = a;
    b["timing"]["median_ms"] = 2.0;
    EXPECT_EQ(cli::state_key(a), cli::state_key(b));
    b["phase"] = "bwd";
    EXPECT_NE(cli::state_key(a), cli::state_key(b));
    b = a;
    b["config"]["seed"] = 2;
    EXPECT_NE(cli::state_key(a), cli::state_key(b));
}

TEST(Paper, PublishedPointsOfSpecSection7) {
    const auto a = cli::published_points("2a");
    ASSERT_EQ(a.size(), 6u);
    EXPECT_EQ(a.back().length, 1 << 20);
    EXPECT_DOUBLE_EQ(a.back().speedup, 6.54);
    const auto b = cli::published_points("2b");
    ASSERT_EQ(b.size(), 8u);
    EXPECT_DOUBLE_EQ(b[5].speedup, 11.65);
    EXPECT_THROW(cli::published_points("3"), std::invalid_argument);
}

// The bench writer's records, as moba bench fills them, validate against the report schema.
TEST(BenchRecords, ValidateAgainstTheSchema) {
    Problem p;
    p.seqlens = {4096, 100};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = 128;
    p.block = 512;
    p.topk = 3;
    const CheckCase state{p, 7};
    ReportWriter w("", "bench", {"moba", "bench"});
    for (const auto& impl : registry())
        for (Phase phase : {Phase::fwd, Phase::bwd, Phase::fwdbwd}) {
            BenchRecord rec = bench_record_skeleton(state, impl, phase, GatingMode::separate);
            // The check figures as bench_impl fills them.
            rec.check_selection = impl.dense ? "full_causal" : "own";
            rec.check_rows = 32;
            if (impl.has_gating()) {
                GatingCheck g;
                g.pairs = 32 * 8;
                g.near_ties = 3;
                g.near_tie_mismatches = 1;
                rec.gating_check = g;
            }
            if (phase != Phase::fwd) {
                BackwardCheckFigures b;
                b.worst_ratio = 0.4;
                b.query_rows = 32;
                b.key_rows = 8;
                b.attending_rows = 700;
                b.key_blocks = {KeyBlock{0, 7, 4096, 1e9}, KeyBlock{1, 0, 800, 2e8}};
                b.blocks_total = 9;
                b.blocks_over_budget = 1;
                b.most_attended = KeyBlock{0, 0, 30000, 9e10};
                b.work_budget = 2e10;
                rec.backward_check = b;
            }
            nlohmann::json r = rec;
            if (impl.has_gating()) {
                EXPECT_EQ(r["gating_check"]["rows"], 32);
            }
            if (phase != Phase::fwd) {
                EXPECT_EQ(r["backward_check"]["most_attended"]["block"], 0);
            }
            EXPECT_EQ(r["command"].get<std::string>().find("moba bench --seqlens 4096,100"), 0u) << r["command"];
            EXPECT_EQ(r["gating"], gating_label(impl, phase, GatingMode::separate));
            w.add(r);  // skipped: no measurements
            Timing t = summarize({1.0, 1.1, 0.9});
            t.warmup = 2;
            t.stop = "converged";
            r["timing"] = timing_json(t);
            r["tflops"] = r["flops"].get<double>() / 1e9;
            if (r["gating"] == "separate") r["gating_ms"] = 0.1;
            r["peak_memory_bytes"] = 1 << 20;
            r["sm_clock_start_mhz"] = 1980;
            r["sm_clock_end_mhz"] = 1980;
            r["throttled"] = false;
            r["check_outcome"] = "passed";
            r["outcome"] = "passed";
            w.add(r);
        }
    w.finish();
    const auto validator = SchemaValidator::from_file(MOBA_SCHEMA_PATH);
    const auto errors = validator.validate(w.document());
    EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front()) << " (" << errors.size() << " errors)";
    // And a planted violation is caught.
    nlohmann::json bad = w.document();
    bad["records"][1].erase("timing");
    EXPECT_FALSE(validator.validate(bad).empty());
    bad = w.document();
    bad["records"][1]["gating_check"].erase("mismatches");  // naive, fwd: has gating
    EXPECT_FALSE(validator.validate(bad).empty());
    bad = w.document();
    bad["records"][3]["backward_check"]["key_blocks"][0]["work"] = -1;  // naive, bwd
    EXPECT_FALSE(validator.validate(bad).empty());
}

}  // namespace
}  // namespace moba

// The stopping rule of the timing core: --max-seconds never ends sampling before --min-samples;
// only the per-state cap does, and then the record says under_sampled.
namespace moba {
namespace {

TEST(StoppingRule, MinimumSamplesBeforeTheSoftTimeLimit) {
    TimingOptions o;
    o.min_samples = 5;
    o.max_samples = 100;
    o.target_rel_stddev = 0.02;
    o.max_seconds = 1.0;
    o.cap_seconds = 60.0;
    EXPECT_EQ(stop_reason(1, 0.5, 30.0, o), "");           // slow, but only one sample: go on
    EXPECT_EQ(stop_reason(4, 0.0, 30.0, o), "");           // converged spread, still under the minimum
    EXPECT_EQ(stop_reason(5, 0.5, 30.0, o), "max_time");   // minimum in, soft limit passed
    EXPECT_EQ(stop_reason(5, 0.01, 0.1, o), "converged");
    EXPECT_EQ(stop_reason(3, 0.5, 61.0, o), "time_cap");   // the hard cap, under the minimum
    EXPECT_EQ(stop_reason(100, 0.5, 0.1, o), "max_samples");
    EXPECT_EQ(stop_reason(6, 0.5, 0.5, o), "");
}

}  // namespace
}  // namespace moba

// --cold reaches the timing options and every record's reproduce command; --time-cap must be
// positive.
namespace moba {
namespace {

// A small state whose reproduce commands the tests below compare.
CheckCase small_state() {
    Problem p;
    p.seqlens = {1000};
    p.heads_q = p.heads_kv = 2;
    p.head_dim = 64;
    p.block = 128;
    p.topk = 2;
    return {p, 3};
}

TEST(ColdSamples, PlannedAndInTheCommand) {
    cli::BenchFlags f;
    f.seqlens = "1000";
    f.cold = true;
    EXPECT_TRUE(cli::plan_bench(f).options.timing.cold);
    f.cold = false;
    EXPECT_FALSE(cli::plan_bench(f).options.timing.cold);
    f.time_cap = 0;
    test::expect_error([&] { cli::plan_bench(f); }, "--time-cap");
    const CheckCase state = small_state();
    const Implementation& naive = *find_implementation("naive");
    const std::string cold = bench_record_skeleton(state, naive, Phase::fwd, GatingMode::included, true).command;
    const std::string warm = bench_record_skeleton(state, naive, Phase::fwd, GatingMode::included).command;
    EXPECT_EQ(cold, warm + " --cold");
}

}  // namespace
}  // namespace moba

// --warmup-seconds: untimed runs until that much time has passed, on top of --warmup's count (and
// past its one-long-run shortcut); refused when negative or not finite; said in every record's
// reproduce command, and a --resume run keeps to the warm-up its records had.
namespace moba {
namespace {

TEST(WarmupSeconds, RuleOptionsCommandAndResume) {
    TimingOptions o;
    o.warmup = 2;
    EXPECT_FALSE(warmup_done(1, false, 0.0, o));
    EXPECT_TRUE(warmup_done(2, false, 0.0, o));
    EXPECT_TRUE(warmup_done(1, true, 0.0, o));  // one run past warmup_long_ms is enough
    o.warmup_seconds = 3.0;
    EXPECT_FALSE(warmup_done(2, false, 2.9, o));
    EXPECT_FALSE(warmup_done(1, true, 2.9, o));  // the long run does not shorten the seconds
    EXPECT_FALSE(warmup_done(1, false, 3.5, o));  // nor the seconds the count
    EXPECT_TRUE(warmup_done(2, false, 3.0, o));
    o.warmup = 0;
    o.warmup_seconds = 0;
    EXPECT_TRUE(warmup_done(0, false, 0.0, o));  // --warmup 0: the check's run warms up

    cli::BenchFlags f;
    f.seqlens = "1000";
    EXPECT_EQ(cli::plan_bench(f).options.timing.warmup_seconds, 0.0);
    f.warmup_seconds = 2.5;
    EXPECT_EQ(cli::plan_bench(f).options.timing.warmup_seconds, 2.5);
    for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
        f.warmup_seconds = bad;
        test::expect_error([&] { cli::plan_bench(f); }, "--warmup-seconds");
    }
    const CheckCase state = small_state();
    const Implementation& naive = *find_implementation("naive");
    const std::string plain = bench_record_skeleton(state, naive, Phase::fwd, GatingMode::included).command;
    const std::string warmed =
        bench_record_skeleton(state, naive, Phase::fwd, GatingMode::included, false, 2.5).command;
    EXPECT_EQ(warmed, plain + " --warmup-seconds 2.5");
    const std::string both = bench_record_skeleton(state, naive, Phase::fwd, GatingMode::included, true, 4).command;
    EXPECT_EQ(both, plain + " --cold --warmup-seconds 4");

    cli::BenchFlags now;
    EXPECT_EQ(cli::resume_mismatch(plain, now), "");
    now.warmup_seconds = 2.5;
    EXPECT_EQ(cli::resume_mismatch(warmed, now), "");
    auto says = [&](const std::string& command, const std::string& what) {
        const std::string why = cli::resume_mismatch(command, now);
        EXPECT_NE(why.find(what), std::string::npos) << why;
    };
    says(plain, "--warmup-seconds 0, not 2.5");
    now.warmup_seconds = 4;
    says(warmed, "--warmup-seconds 2.5, not 4");
    now.cold = true;
    EXPECT_EQ(cli::resume_mismatch(both, now), "");
    says(warmed, "without --cold");
}

}  // namespace
}  // namespace moba
