#include "harness/dashboard_views.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "harness/report_compare.hpp"
#include "harness/report_io.hpp"

namespace moba {
namespace {

using nlohmann::json;

// A report as the views see it: its place in the sorted list and the fields they group by.
struct Shown {
    std::size_t id = 0;
    const DashboardReport* source = nullptr;
    std::string gpu, commit, started;
    const json& records() const { return source->report["records"]; }
};

std::string gpu_of(const json& report) {
    const json device = report.value("device", json::object());
    if (!device.value("present", false)) return "no GPU";
    return device.value("name", std::string("unnamed GPU"));
}

std::string commit_of(const json& report) {
    const std::string sha = report["meta"].value("git_sha", std::string("unknown"));
    return sha.substr(0, 7);
}

std::string text(const json& r, const char* key) {
    return r.contains(key) ? cell_text(&r[key]) : std::string();
}

// A finite number as JSON, anything else as null (reports write non-finite numbers as null).
json number_or_null(double x) { return std::isfinite(x) ? json(x) : json(); }

double number(const json& object, const char* key) {
    return object.is_object() && object.contains(key) && object[key].is_number()
               ? object[key].get<double>()
               : std::nan("");
}

bool is_kind(const json& r, const char* kind) { return r.value("kind", json()) == kind; }

std::vector<Shown> shown_reports(const DashboardInputs& in) {
    std::vector<Shown> shown;
    for (const DashboardReport& r : in.reports)
        shown.push_back({0, &r, gpu_of(r.report), commit_of(r.report),
                         r.report["meta"].value("started", std::string())});
    std::stable_sort(shown.begin(), shown.end(), [](const Shown& a, const Shown& b) {
        return std::tie(a.gpu, a.started, a.source->path) <
               std::tie(b.gpu, b.started, b.source->path);
    });
    for (std::size_t i = 0; i < shown.size(); ++i) shown[i].id = i;
    return shown;
}

json report_rows(const std::vector<Shown>& shown) {
    json rows = json::array();
    for (const Shown& s : shown) {
        const json& r = s.source->report;
        std::map<std::string, int> outcomes;
        for (const json& rec : s.records()) ++outcomes[text(rec, "outcome")];
        rows.push_back({{"id", s.id},
                        {"path", s.source->path},
                        {"tool", r["meta"].value("tool", std::string())},
                        {"gpu", s.gpu},
                        {"commit", s.commit},
                        {"dirty", r["meta"].value("git_dirty", false)},
                        {"started", s.started},
                        {"complete", r.value("complete", false)},
                        {"records", s.records().size()},
                        {"outcomes", outcomes}});
    }
    return rows;
}

json problem_rows(const DashboardInputs& in) {
    json rows = json::array();
    for (const char* kind : {"invalid", "skipped"})
        for (const DashboardProblem& p : in.problems)
            if (p.kind == kind)
                rows.push_back({{"path", p.path},
                                {"kind", p.kind},
                                {"message", p.message},
                                {"details", p.details}});
    return rows;
}

// One record picked for a chart: the latest (by the report's start) of its key.
struct Pick {
    const Shown* report = nullptr;
    std::size_t index = 0;
    const json& record() const { return report->records()[index]; }
};
void keep_latest(std::map<std::string, Pick>& picks, const std::string& key, Pick p) {
    auto [it, inserted] = picks.emplace(key, p);
    if (!inserted && it->second.report->started <= p.report->started) it->second = p;
}

bool timed(const json& r) {
    return is_kind(r, "bench") && r.value("outcome", json()) == "passed" &&
           number(r.value("timing", json()), "median_ms") > 0;
}

json fig2_rows(const std::vector<Shown>& shown) {
    std::map<std::string, Pick> picks;  // (gpu, figure, impl, length)
    for (const Shown& s : shown)
        for (std::size_t i = 0; i < s.records().size(); ++i) {
            const json& r = s.records()[i];
            // The published points are forward times (SEMANTICS.md §7).
            if (!timed(r) || !r.contains("published") || !r["published"].is_object() ||
                text(r, "phase") != "fwd")
                continue;
            const json& config = r["config"];
            keep_latest(
                picks,
                fmt::format("{}\x1f{}\x1f{}\x1f{:020}", s.gpu, text(r["published"], "figure"),
                            text(r, "impl"), config.value("total_tokens", 0LL)),
                {&s, i});
        }
    json time = json::array(), speedup = json::array();
    // (gpu, figure, length): one published point and one ideal speedup each.
    std::set<std::string> published_done, ideal_done;
    for (const auto& [key, p] : picks) {
        const json& r = p.record();
        const json& pub = r["published"];
        const std::string figure = text(pub, "figure");
        const long long length = r["config"].value("total_tokens", 0LL);
        auto row = [&](const std::string& series, double value) {
            return json{{"gpu", p.report->gpu},
                        {"figure", figure},
                        {"length", length},
                        {"series", series},
                        {"value", value},
                        {"impl", text(r, "impl")},
                        {"report", p.report->source->path},
                        {"commit", p.report->commit}};
        };
        const bool dense = r.value("dense", false);
        time.push_back(row("ours: " + text(r, "impl"), r["timing"]["median_ms"].get<double>()));
        if (!dense && std::isfinite(number(r, "speedup_vs_dense")))
            speedup.push_back(row("ours: " + text(r, "impl"), number(r, "speedup_vs_dense")));
        const std::string point = fmt::format("{}\x1f{}\x1f{}", p.report->gpu, figure, length);
        // dense_pairs / pairs of a MoBA record (a dense one attends every pair: 1).
        const double pairs = number(r, "pairs"), dense_pairs = number(r, "dense_pairs");
        if (!dense && pairs > 0 && dense_pairs > 0 && ideal_done.insert(point).second)
            speedup.push_back(row("ideal", dense_pairs / pairs));
        if (!published_done.insert(point).second) continue;
        if (std::isfinite(number(pub, "moba_ms")))
            time.push_back(row("published: MoBA", number(pub, "moba_ms")));
        if (std::isfinite(number(pub, "dense_ms")))
            time.push_back(row("published: full attention", number(pub, "dense_ms")));
        if (std::isfinite(number(pub, "speedup")))
            speedup.push_back(row("published", number(pub, "speedup")));
    }
    return {{"time", time}, {"speedup", speedup}};
}

json throughput_rows(const std::vector<Shown>& shown) {
    std::map<std::string, Pick> picks;
    for (const Shown& s : shown)
        for (std::size_t i = 0; i < s.records().size(); ++i) {
            const json& r = s.records()[i];
            if (timed(r) && std::isfinite(number(r, "tflops")))
                keep_latest(picks, s.gpu + "\x1e" + match_key(r), {&s, i});
        }
    json rows = json::array();
    for (const auto& [key, p] : picks) {
        const json& r = p.record();
        const json& c = r["config"];
        rows.push_back(
            {{"gpu", p.report->gpu},
             {"layout", text(c, "layout")},
             {"phase", text(r, "phase")},
             {"gating", text(r, "gating")},
             {"impl", text(r, "impl")},
             {"series", fmt::format("{} D{} Bs={} k={} {}", text(r, "impl"), text(c, "head_dim"),
                                    text(c, "block"), text(c, "topk"), text(c, "dtype"))},
             {"length", c.value("total_tokens", 0LL)},
             {"tflops", number(r, "tflops")},
             {"config", describe_config(c)},
             {"report", p.report->source->path},
             {"commit", p.report->commit}});
    }
    return rows;
}

json history_rows(const std::vector<Shown>& shown, double threshold) {
    struct Point {
        const Shown* report;
        std::size_t index;
        TimingStats timing;
    };
    std::map<std::string, std::vector<Point>> by_key;  // shown is sorted by start: points in order
    for (const Shown& s : shown)
        for (std::size_t i = 0; i < s.records().size(); ++i) {
            const json& r = s.records()[i];
            if (!timed(r)) continue;
            by_key[s.gpu + "\x1e" + match_key(r)].push_back(
                {&s, i, timing_stats(r, i, s.source->path)});
        }
    json rows = json::array();
    int series = 0;
    for (const auto& [key, points] : by_key) {
        std::set<std::string> commits;
        for (const Point& p : points) commits.insert(p.report->commit);
        if (commits.size() < 2) continue;  // not tracked across commits
        const json& first = points.front().report->records()[points.front().index];
        const std::string label =
            fmt::format("{} | {} {} {} | {}", describe_config(first["config"]), text(first, "impl"),
                        text(first, "phase"), text(first, "gating"), points.front().report->gpu);
        for (std::size_t k = 0; k < points.size(); ++k) {
            const Point& p = points[k];
            json row = {{"series", series},
                        {"label", label},
                        {"gpu", p.report->gpu},
                        {"commit", p.report->commit},
                        {"started", p.report->started},
                        {"report", p.report->source->path},
                        {"median_ms", p.timing.median_ms},
                        {"min_ms", number_or_null(p.timing.min_ms)},
                        {"max_ms", number_or_null(p.timing.max_ms)},
                        {"rel_stddev", p.timing.rel_stddev},
                        {"verdict", "first"},
                        {"change", json()}};
            if (k > 0) {
                const Judgement j = judge(points[k - 1].timing, p.timing, threshold);
                row["verdict"] = std::string(to_string(j.verdict));
                row["change"] = j.change;
            }
            rows.push_back(std::move(row));
        }
        ++series;
    }
    return rows;
}

json correctness_data(const std::vector<Shown>& shown) {
    json outcomes = json::array(), worst = json::array(), ties = json::array(), bad = json::array();
    for (const Shown& s : shown) {
        std::map<std::string, int> by_outcome;
        std::map<std::pair<std::string, std::string>, std::pair<double, int>> worst_of;
        std::map<std::string, double> tie_counts;
        bool has_gating = false;
        for (std::size_t i = 0; i < s.records().size(); ++i) {
            const json& r = s.records()[i];
            const std::string outcome = text(r, "outcome");
            ++by_outcome[outcome];
            const bool check = is_kind(r, "check");
            if (outcome == "incorrect" || outcome == "failed") {
                std::string reason = text(r, "reason");
                if (reason.size() > 400) reason = reason.substr(0, 400) + "...";
                bad.push_back({{"report", s.source->path},
                               {"gpu", s.gpu},
                               {"commit", s.commit},
                               {"index", i},
                               {"kind", text(r, "kind")},
                               {"config", describe_config(r.value("config", json::object()))},
                               {"impl", text(r, "impl")},
                               {"what", check ? text(r, "check") + " " + text(r, "tensor")
                                              : text(r, "phase")},
                               {"outcome", outcome},
                               {"ratio", number_or_null(number(r, "ratio"))},
                               {"reason", reason}});
            }
            if (!check) continue;
            if (const double ratio = number(r, "ratio"); std::isfinite(ratio)) {
                auto& [w, n] = worst_of[{text(r, "check"), text(r, "tensor")}];
                w = n == 0 ? ratio : std::max(w, ratio);
                ++n;
            }
            if (text(r, "check") == "gating") {
                has_gating = true;
                for (const char* k : {"pairs", "mismatches", "near_ties", "exact_ties",
                                      "near_tie_mismatches", "tie_violations"})
                    if (std::isfinite(number(r, k))) tie_counts[k] += number(r, k);
            }
        }
        for (const auto& [outcome, count] : by_outcome)
            outcomes.push_back({{"report", s.source->path},
                                {"gpu", s.gpu},
                                {"commit", s.commit},
                                {"outcome", outcome},
                                {"count", count}});
        for (const auto& [what, w] : worst_of)
            worst.push_back({{"report", s.source->path},
                             {"gpu", s.gpu},
                             {"check", what.first},
                             {"tensor", what.second},
                             {"worst_ratio", w.first},
                             {"records", w.second}});
        if (has_gating) {
            json row = {{"report", s.source->path}, {"gpu", s.gpu}, {"commit", s.commit}};
            for (const auto& [k, v] : tie_counts) row[k] = v;
            ties.push_back(std::move(row));
        }
    }
    return {{"outcomes", outcomes}, {"worst", worst}, {"ties", ties}, {"bad", bad}};
}

json comparison_rows(const Comparison& c) {
    json rows = json::array();
    auto base_row = [](const RecordRef& b, const std::string& what) {
        return json{{"config", b.config}, {"impl", b.impl}, {"what", what}};
    };
    for (const PairResult& p : c.pairs) {
        json row = base_row(p.base, p.base.phase + " " + p.base.gating);
        row.update({{"kind", "bench"},
                    {"base", p.base_timing.median_ms},
                    {"next", p.next_timing.median_ms},
                    {"delta", p.judgement.change},
                    {"noise", p.judgement.noise},
                    {"verdict", to_string(p.judgement.verdict)}});
        rows.push_back(std::move(row));
    }
    for (const auto& [b, n] : c.not_passed) {
        json row = base_row(b, b.phase + " " + b.gating);
        row.update({{"kind", "bench"},
                    {"base", b.outcome},
                    {"next", n.outcome},
                    {"delta", json()},
                    {"noise", json()},
                    {"verdict", "not passed"}});
        rows.push_back(std::move(row));
    }
    // Like `moba compare`'s table: check pairs that did not change are counted, not listed.
    for (const CheckPair& p : c.check_pairs) {
        if (p.verdict == CheckVerdict::same) continue;
        json row = base_row(p.base, p.base.check + " " + p.base.tensor);
        row.update(
            {{"kind", "check"},
             {"base", std::isfinite(p.base_ratio) ? json(p.base_ratio) : json(p.base.outcome)},
             {"next", std::isfinite(p.next_ratio) ? json(p.next_ratio) : json(p.next.outcome)},
             {"delta", number_or_null(p.next_ratio - p.base_ratio)},
             {"noise", json()},
             {"verdict", to_string(p.verdict)}});
        rows.push_back(std::move(row));
    }
    return rows;
}

json comparisons(const std::vector<Shown>& shown, double threshold) {
    // Reports whose keys never meet have nothing to compare: skip them before comparing.
    std::vector<std::set<std::string>> keys(shown.size());
    for (const Shown& s : shown)
        for (const json& r : s.records())
            if (is_kind(r, "bench") || is_kind(r, "check"))
                keys[s.id].insert(text(r, "kind") + "\x1e" + match_key(r));
    std::vector<const Shown*> by_start;
    for (const Shown& s : shown) by_start.push_back(&s);
    std::stable_sort(by_start.begin(), by_start.end(),
                     [](const Shown* a, const Shown* b) { return a->started < b->started; });
    json out = json::array();
    for (std::size_t i = 0; i < by_start.size(); ++i)
        for (std::size_t j = i + 1; j < by_start.size(); ++j) {
            const Shown& base = *by_start[i];
            const Shown& next = *by_start[j];
            const auto& kb = keys[base.id];
            const auto& kn = keys[next.id];
            if (std::none_of(kb.begin(), kb.end(),
                             [&](const std::string& k) { return kn.count(k); }))
                continue;
            json pair = {{"base", base.id}, {"next", next.id}};
            try {
                const Comparison c =
                    compare_reports(base.source->report, next.source->report, threshold,
                                    base.source->path, next.source->path);
                json counts = json::object();
                for (Verdict v :
                     {Verdict::faster, Verdict::slower, Verdict::same, Verdict::ambiguous})
                    counts[std::string(to_string(v))] = c.count(v);
                for (CheckVerdict v :
                     {CheckVerdict::regressed, CheckVerdict::worse, CheckVerdict::better,
                      CheckVerdict::fixed, CheckVerdict::changed, CheckVerdict::same})
                    counts["checks " + std::string(to_string(v))] = c.count(v);
                counts["not passed"] = c.not_passed.size();
                counts["only in base"] = c.only_base.size() + c.check_only_base.size();
                counts["only in new"] = c.only_next.size() + c.check_only_next.size();
                pair.update({{"matched", c.matched()},
                             {"geomean_ratio", number_or_null(c.geomean_ratio())},
                             {"regression", c.regression()},
                             {"counts", counts},
                             {"rows", comparison_rows(c)}});
            } catch (const std::exception& e) {
                pair["error"] = e.what();
            }
            out.push_back(std::move(pair));
        }
    return out;
}

}  // namespace

json dashboard_data(const DashboardInputs& inputs, double threshold) {
    const std::vector<Shown> shown = shown_reports(inputs);
    return {{"threshold", threshold},
            {"reports", report_rows(shown)},
            {"problems", problem_rows(inputs)},
            {"fig2", fig2_rows(shown)},
            {"throughput", throughput_rows(shown)},
            {"history", history_rows(shown, threshold)},
            {"correctness", correctness_data(shown)},
            {"comparisons", comparisons(shown, threshold)}};
}

}  // namespace moba
