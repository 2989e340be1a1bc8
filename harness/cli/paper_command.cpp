// `moba paper`: the published points of Figure 2, the runs at their lengths, and the table beside them.
#include "harness/cli/paper_command.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/bench.hpp"
#include "harness/cli/parse.hpp"
#include "harness/device.hpp"
#include "harness/records.hpp"
#include "harness/report.hpp"

namespace moba::cli {

std::vector<PublishedPoint> published_points(const std::string& figure) {
    constexpr int K = 1024, M = 1024 * 1024;
    if (figure == "2a")
        return {{8 * K, 0.26, 0.26, 1.0},      {32 * K, 1.25, 1.25, 1.0},    {128 * K, 14.3, 12.0, 1.19},
                {256 * K, 57.7, 27.4, 2.11},   {512 * K, 236.1, 60.6, 3.90}, {1 * M, 944, 144.3, 6.54}};
    if (figure == "2b")
        return {{8 * K, 0.25, 0.25, 1.0},         {32 * K, 1.24, 1.24, 1.0},     {128 * K, 13.5, 4.04, 3.34},
                {256 * K, 55.4, 9.46, 5.85},      {512 * K, 225, 24.7, 9.11},    {1 * M, 902, 77.4, 11.65},
                {4 * M, 14550, 1030, 14.15},      {10 * M, 90900, 5860, 15.5}};
    throw std::invalid_argument(fmt::format("--figure '{}' is not 2a or 2b", figure));
}

CLI::App* add_paper_command(CLI::App& app, PaperFlags& f) {
    CLI::App* cmd = app.add_subcommand("paper", "Reproduce Figure 2 of the MoBA report (forward time, MoBA vs dense)");
    cmd->add_option("--figure", f.figure, "2a (block 4096, top-k 12) or 2b (64 blocks, top-k 3)")->required();
    cmd->add_option("--lengths", f.lengths, "Override the figure's lengths, e.g. 8K,32K,128K");
    cmd->add_option("--heads", f.heads, "Query heads")->capture_default_str();
    cmd->add_option("--kv-heads", f.kv_heads, "KV heads")->capture_default_str();
    cmd->add_option("--head-dim", f.head_dim, "Head dim")->capture_default_str();
    cmd->add_option("--impl", f.impl, "Implementations (MoBA and dense) to run")->capture_default_str();
    cmd->add_option("--max-run-seconds", f.max_run_seconds,
                    "Do not run an implementation predicted (from its rate at the previous length) to take longer per call")
        ->capture_default_str();
    cmd->add_option("--max-seconds", f.max_seconds, "Sampling time per state once the minimum samples are in")->capture_default_str();
    cmd->add_option("--time-cap", f.time_cap, "Hard sampling limit per state (may leave a record under_sampled)")->capture_default_str();
    cmd->add_flag("--cold", f.cold, "Flush L2 (overwrite twice its size) before every sample");
    cmd->add_option("--warmup", f.warmup,
                    "Untimed runs before the samples (one is enough past 2 s a run; 0: the check's run warms up, "
                    "for 10M-token dense runs of a minute)")
        ->capture_default_str();
    cmd->add_option("--warmup-seconds", f.warmup_seconds,
                    "And untimed runs until this many seconds have passed (sustained-load clocks, fair ratios)")
        ->capture_default_str();
    cmd->add_option("--seed", f.seed, "Seed of the inputs")->capture_default_str();
    cmd->add_option("--out", f.out, "JSON report (default reports/paper-<figure>.json)");
    cmd->add_option("--markdown", f.markdown, "Markdown table (default: the report path with .md)");
    return cmd;
}

namespace {

// The best time of one side (dense or MoBA) at one length, and whether its median came from fewer
// samples than asked (the time cap stopped it: marked where it is printed).
struct Best {
    std::optional<double> ms;
    std::string impl;
    bool under_sampled = false;
    int samples = 0, min_samples = 0;
};

struct Row {
    PublishedPoint published;
    Best dense, moba;
    std::optional<double> speedup;
    std::string note;
    double ideal = 0;
};

std::string under_sampled_mark(const Timing& t) {
    return t.under_sampled ? fmt::format(" UNDER-SAMPLED ({} of {})", t.samples_ms.size(), t.min_samples) : "";
}

std::string ms(const Best& b) {
    if (!b.ms) return "not run";
    return fmt::format("{:.3f}{} {}", *b.ms, b.under_sampled ? "*" : "", b.impl);
}

std::string table(const std::vector<Row>& rows, const std::string& figure, bool markdown) {
    std::string out;
    const auto line = [&](const std::vector<std::string>& cells) {
        if (markdown) {
            out += "|";
            for (const auto& c : cells) out += " " + c + " |";
        } else {
            out += fmt::format("{:>7} {:>14} {:>14} {:>10} {:>8} | {:>9} {:>9} {:>8} | {}", cells[0], cells[1], cells[2],
                               cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]);
        }
        out += "\n";
    };
    line({"length", "dense ms (ours)", "MoBA ms (ours)", "speedup", "ideal", "FA ms", "MoBA ms", "speedup", "note"});
    if (markdown) out += "|---|---|---|---|---|---|---|---|---|\n";
    for (const Row& r : rows) {
        const int len = r.published.length;
        const std::string name = len >= 1024 * 1024 ? fmt::format("{}M", len / (1024 * 1024)) : fmt::format("{}K", len / 1024);
        line({name, ms(r.dense), ms(r.moba), r.speedup ? fmt::format("{:.2f}{}", *r.speedup, r.dense.under_sampled || r.moba.under_sampled ? "*" : "") : "-",
              fmt::format("{:.2f}", r.ideal),
              fmt::format("{}", r.published.dense_ms), fmt::format("{}", r.published.moba_ms),
              fmt::format("{}", r.published.speedup), r.note});
    }
    std::string marks;
    for (const Row& r : rows)
        for (const Best* b : {&r.dense, &r.moba})
            if (b->under_sampled)
                marks += fmt::format("* {} at {}: median of {} samples, fewer than the {} asked (--time-cap)\n", b->impl,
                                     r.published.length, b->samples, b->min_samples);
    return fmt::format("Figure {} (ours: this GPU, measured in one process; published: MoBA report, read off the plot)\n", figure) +
           out + (markdown && !marks.empty() ? "\n" : "") + marks;
}

}  // namespace

int run_paper(const PaperFlags& flags, const std::vector<std::string>& argv) {
    const auto points = published_points(flags.figure);
    std::vector<PublishedPoint> wanted = points;
    if (!flags.lengths.empty()) {
        wanted.clear();
        for (int len : parse_lengths(flags.lengths, "--lengths")) {
            const auto it = std::find_if(points.begin(), points.end(), [&](const auto& p) { return p.length == len; });
            if (it == points.end())
                throw std::invalid_argument(fmt::format("--lengths: {} is not a length of figure {}", len, flags.figure));
            wanted.push_back(*it);
        }
    }
    if (!(flags.max_seconds > 0)) throw std::invalid_argument(fmt::format("--max-seconds {} must be positive", flags.max_seconds));
    if (!(flags.time_cap > 0)) throw std::invalid_argument(fmt::format("--time-cap {} must be positive", flags.time_cap));
    if (flags.warmup < 0) throw std::invalid_argument(fmt::format("--warmup {} must be 0 or more", flags.warmup));
    check_warmup_seconds(flags.warmup_seconds);
    std::vector<const Implementation*> impls;
    for (const auto& name : parse_impl_list(flags.impl)) impls.push_back(find_implementation(name));
    if (flags.impl == "all")  // the paper's figures are prefill
        std::erase_if(impls, [](const Implementation* impl) { return !impl->has_forward(); });
    const DeviceInfo& dev = device_info();
    if (!dev.present) {
        fmt::print(stderr, "moba paper: no GPU found ({}); nothing can be timed.\n", dev.reason);
        return 1;
    }
    const std::string out = flags.out.empty() ? "reports/paper-" + flags.figure + ".json" : flags.out;
    std::string md = flags.markdown;
    if (md.empty()) md = (out.size() > 5 && out.ends_with(".json") ? out.substr(0, out.size() - 5) : out) + ".md";
    ReportWriter report(out, "paper", argv);

    std::map<std::string, double> ms_per_pair;  // each implementation's rate at the last length it ran
    std::vector<Row> rows;
    for (const PublishedPoint& pt : wanted) {
        Problem p;
        p.seqlens = {pt.length};
        p.heads_q = flags.heads;
        p.heads_kv = flags.kv_heads;
        p.head_dim = flags.head_dim;
        p.block = flags.figure == "2a" ? 4096 : pt.length / 64;
        p.topk = flags.figure == "2a" ? 12 : 3;
        p.dtype = DType::bf16;
        p.validate();
        const CheckCase state{p, flags.seed};
        BenchOptions options;
        options.gating = GatingMode::included;
        options.timing.max_seconds = flags.max_seconds;
        options.timing.cap_seconds = flags.time_cap;
        options.timing.cold = flags.cold;
        options.timing.warmup = flags.warmup;
        options.timing.warmup_seconds = flags.warmup_seconds;
        std::vector<BenchRecord> records;
        for (const Implementation* impl : impls) {
            const double pairs = impl->dense ? p.dense_pairs() : moba_pairs(p);
            const auto rate = ms_per_pair.find(impl->name);
            if (rate != ms_per_pair.end() && rate->second * pairs > 1000 * flags.max_run_seconds) {
                BenchRecord r = bench_record_skeleton(state, *impl, Phase::fwd, options.gating, flags.cold, flags.warmup_seconds);
                r.reason = fmt::format("not run: {:.1f} s per call predicted from its rate at the previous length "
                                       "exceeds --max-run-seconds {}", rate->second * pairs / 1000, flags.max_run_seconds);
                records.push_back(std::move(r));
            } else {
                options.impls.push_back(impl);
            }
        }
        fmt::print("L={} block={} topk={}: running {} implementations\n", pt.length, p.block, p.topk, options.impls.size());
        std::fflush(stdout);
        if (!options.impls.empty()) {
            auto measured = bench_records(state, options);
            records.insert(records.end(), measured.begin(), measured.end());
        }
        Row row{pt, {}, {}, {}, "", p.dense_pairs() / moba_pairs(p)};
        for (auto& r : records) {
            r.published = PublishedFigures{flags.figure, pt.dense_ms, pt.moba_ms, pt.speedup};
            const bool passed = r.outcome == Outcome::passed;
            if (passed) {
                const Timing& t = r.measured->timing;
                const double m = t.median_ms;
                ms_per_pair[r.impl] = m / static_cast<double>(static_cast<std::int64_t>(r.pairs));  // as written
                Best& best = r.dense ? row.dense : row.moba;
                if (!best.ms || m < *best.ms)
                    best = Best{m, r.impl, t.under_sampled, static_cast<int>(t.samples_ms.size()), t.min_samples};
            } else {
                row.note += (row.note.empty() ? "" : "; ") + r.impl + ": " + r.reason.substr(0, 100);
            }
            fmt::print("  {:<13} {:<9} {}\n", r.impl, to_string(r.outcome),
                       passed ? fmt::format("{:.3f} ms{}", r.measured->timing.median_ms, under_sampled_mark(r.measured->timing))
                              : r.reason);
            report.add(r);
        }
        if (row.dense.ms && row.moba.ms) row.speedup = *row.dense.ms / *row.moba.ms;
        rows.push_back(row);
        report.flush();
    }
    report.finish();
    const std::string text = table(rows, flags.figure, false);
    fmt::print("\n{}", text);
    std::ofstream(md) << table(rows, flags.figure, true);
    fmt::print("report: {}\nmarkdown: {}\n", out, md);
    return 0;
}

}  // namespace moba::cli
