#include "harness/report_compare.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/report_io.hpp"

namespace moba {
namespace {

using nlohmann::json;

std::string text_field(const json& r, const char* key) {
    return r.contains(key) ? cell_text(&r[key]) : std::string();
}

RecordRef record_ref(const json& r, std::size_t index) {
    return {index,
            describe_config(r.value("config", json::object())),
            text_field(r, "impl"),
            text_field(r, "phase"),
            text_field(r, "gating"),
            text_field(r, "outcome"),
            text_field(r, "reason")};
}

// (config without seed, impl, phase, gating): what makes two bench records comparable.
std::string match_key(const json& r) {
    json config = r.value("config", json::object());
    if (config.is_object()) {
        config.erase("seed");
        // Reports written before input families existed drew every input from N(0, 1).
        if (!config.contains("inputs")) config["inputs"] = "normal";
    }
    return fmt::format("{}\x1f{}\x1f{}\x1f{}", config.dump(), text_field(r, "impl"),
                       text_field(r, "phase"), text_field(r, "gating"));
}

bool is_bench(const json& r) { return r.is_object() && r.value("kind", json()) == "bench"; }
// The outcome string as Outcome writes it (outcome.cpp lives in moba_harness, which this
// report-reading library does not link).
bool passed(const json& r) { return r.value("outcome", json()) == "passed"; }

TimingStats timing_stats(const json& r, std::size_t index, const std::string& file) {
    const json t = r.value("timing", json());
    auto number = [&](const char* key) {
        return t.is_object() && t.contains(key) && t[key].is_number()
                   ? t[key].get<double>()
                   : std::numeric_limits<double>::quiet_NaN();
    };
    TimingStats s;
    s.median_ms = number("median_ms");
    if (!(s.median_ms > 0) || !std::isfinite(s.median_ms))
        throw std::invalid_argument(
            fmt::format("{}: /records/{}/timing/median_ms is missing or not a positive number in a "
                        "passed bench record",
                        file, index));
    s.min_ms = number("min_ms");
    s.max_ms = number("max_ms");
    const double rsd = number("rel_stddev");
    s.rel_stddev = std::isfinite(rsd) ? rsd : 0.0;
    return s;
}

// Does [lo, hi] hold x? A side without a range holds nothing.
bool holds(double lo, double hi, double x) {
    return std::isfinite(lo) && std::isfinite(hi) && lo <= x && x <= hi;
}

std::string percent(double x, bool sign) {
    return sign ? fmt::format("{:+.1f}%", 100 * x) : fmt::format("{:.1f}%", 100 * x);
}

std::string ms(double x) { return fmt::format("{:.4g}", x); }

std::string summary_line(const Comparison& c) {
    const double g = c.geomean_ratio();
    return fmt::format(
        "{} compared: {} faster, {} slower, {} same, {} ambiguous; geometric mean new/base {} "
        "(threshold {}, noise floor {})",
        c.pairs.size(), c.count(Verdict::faster), c.count(Verdict::slower), c.count(Verdict::same),
        c.count(Verdict::ambiguous), std::isnan(g) ? std::string("n/a") : fmt::format("{:.3f}", g),
        percent(c.threshold, false), percent(kNoiseFloor, false));
}

std::string ref_text(const RecordRef& r) {
    return fmt::format("{} {} {} {} (record {})", r.config, r.impl, r.phase, r.gating, r.index);
}

std::string outcome_text(const RecordRef& r) {
    return r.reason.empty() ? r.outcome : fmt::format("{}: {}", r.outcome, r.reason);
}

// Rows of the pairs table: config, impl, phase, gating, base ms, new ms, change, noise, verdict.
std::vector<std::vector<std::string>> pair_rows(const Comparison& c) {
    std::vector<std::vector<std::string>> rows;
    for (const PairResult& p : c.pairs)
        rows.push_back({p.base.config, p.base.impl, p.base.phase, p.base.gating,
                        ms(p.base_timing.median_ms), ms(p.next_timing.median_ms),
                        percent(p.judgement.change, true),
                        fmt::format("±{}", percent(p.judgement.noise, false)),
                        std::string(to_string(p.judgement.verdict))});
    return rows;
}

const std::vector<std::string> kPairHeader = {"config", "impl",   "phase", "gating", "base ms",
                                              "new ms", "change", "noise", "verdict"};
constexpr std::size_t kFirstNumeric = 4, kLastNumeric = 7;

// Column width in characters ("±" is one character, two bytes).
std::size_t display_width(const std::string& s) {
    return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char ch) {
        return (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    }));
}

std::string pad(const std::string& s, std::size_t width, bool right) {
    const std::string fill(width - std::min(width, display_width(s)), ' ');
    return right ? fill + s : s + fill;
}

std::string md_escape(const std::string& s) {
    std::string out;
    for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return out;
}

}  // namespace

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::faster:
            return "faster";
        case Verdict::slower:
            return "slower";
        case Verdict::same:
            return "same";
        case Verdict::ambiguous:
            return "ambiguous";
    }
    return "unknown";
}

Judgement judge(const TimingStats& base, const TimingStats& next, double threshold) {
    Judgement j;
    j.change = next.median_ms / base.median_ms - 1.0;
    j.noise = std::max(kNoiseFloor, std::hypot(base.rel_stddev, next.rel_stddev));
    const double size = std::abs(j.change);
    if (size <= j.noise) {
        j.verdict = Verdict::same;
    } else if (size <= threshold || holds(base.min_ms, base.max_ms, next.median_ms) ||
               holds(next.min_ms, next.max_ms, base.median_ms)) {
        j.verdict = Verdict::ambiguous;
    } else {
        j.verdict = j.change < 0 ? Verdict::faster : Verdict::slower;
    }
    return j;
}

double Comparison::geomean_ratio() const {
    if (pairs.empty()) return std::numeric_limits<double>::quiet_NaN();
    double sum = 0;
    for (const PairResult& p : pairs)
        sum += std::log(p.next_timing.median_ms / p.base_timing.median_ms);
    return std::exp(sum / static_cast<double>(pairs.size()));
}

std::size_t Comparison::count(Verdict v) const {
    return static_cast<std::size_t>(std::count_if(
        pairs.begin(), pairs.end(), [&](const PairResult& p) { return p.judgement.verdict == v; }));
}

Comparison compare_reports(const json& base, const json& next, double threshold,
                           const std::string& base_name, const std::string& next_name) {
    Comparison c;
    c.threshold = threshold;
    c.base_complete = base.value("complete", false);
    c.next_complete = next.value("complete", false);
    const json& base_records = base["records"];
    const json& next_records = next["records"];

    // NEW's bench records by key, in order; a cursor per key consumes them.
    std::map<std::string, std::vector<std::size_t>> next_by_key;
    for (std::size_t i = 0; i < next_records.size(); ++i) {
        if (is_bench(next_records[i]))
            next_by_key[match_key(next_records[i])].push_back(i);
        else
            ++c.next_other;
    }
    std::map<std::string, std::size_t> used;
    std::vector<bool> next_matched(next_records.size(), false);
    for (std::size_t i = 0; i < base_records.size(); ++i) {
        const json& b = base_records[i];
        if (!is_bench(b)) {
            ++c.base_other;
            continue;
        }
        const std::string key = match_key(b);
        const auto it = next_by_key.find(key);
        std::size_t& cursor = used[key];
        if (it == next_by_key.end() || cursor >= it->second.size()) {
            c.only_base.push_back(record_ref(b, i));
            continue;
        }
        const std::size_t j = it->second[cursor++];
        next_matched[j] = true;
        const json& n = next_records[j];
        if (!passed(b) || !passed(n)) {
            c.not_passed.emplace_back(record_ref(b, i), record_ref(n, j));
            continue;
        }
        PairResult p{record_ref(b, i),
                     record_ref(n, j),
                     timing_stats(b, i, base_name),
                     timing_stats(n, j, next_name),
                     {}};
        p.judgement = judge(p.base_timing, p.next_timing, threshold);
        c.pairs.push_back(std::move(p));
    }
    for (std::size_t j = 0; j < next_records.size(); ++j)
        if (is_bench(next_records[j]) && !next_matched[j])
            c.only_next.push_back(record_ref(next_records[j], j));
    return c;
}

std::string comparison_text(const Comparison& c, const std::string& base_name,
                            const std::string& next_name) {
    std::string out =
        fmt::format("BASE {}{}\nNEW  {}{}\n", base_name, c.base_complete ? "" : " (incomplete run)",
                    next_name, c.next_complete ? "" : " (incomplete run)");
    const auto rows = pair_rows(c);
    std::vector<std::size_t> width(kPairHeader.size());
    for (std::size_t k = 0; k < width.size(); ++k) {
        width[k] = display_width(kPairHeader[k]);
        for (const auto& row : rows) width[k] = std::max(width[k], display_width(row[k]));
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string s;
        for (std::size_t k = 0; k < cells.size(); ++k)
            s += fmt::format("{}{}", k ? "  " : "",
                             pad(cells[k], width[k], k >= kFirstNumeric && k <= kLastNumeric));
        while (!s.empty() && s.back() == ' ') s.pop_back();
        return s + '\n';
    };
    if (!rows.empty()) {
        out += fmt::format("\n{}", line(kPairHeader));
        for (const auto& row : rows) out += line(row);
    }
    out += fmt::format("\n{}\n", summary_line(c));
    auto list = [&](const char* title, const std::vector<RecordRef>& refs) {
        if (refs.empty()) return;
        out += fmt::format("\n{} ({}):\n", title, refs.size());
        for (const RecordRef& r : refs)
            out += fmt::format("  {}  {}\n", ref_text(r), outcome_text(r));
    };
    list("Only in BASE", c.only_base);
    list("Only in NEW", c.only_next);
    if (!c.not_passed.empty()) {
        out += fmt::format("\nMatched but not timed in both, outcome not passed ({}):\n",
                           c.not_passed.size());
        for (const auto& [b, n] : c.not_passed)
            out += fmt::format("  {}\n    BASE {}\n    NEW  {}\n", ref_text(b), outcome_text(b),
                               outcome_text(n));
    }
    if (c.base_other + c.next_other > 0)
        out += fmt::format("\nNot bench records, not compared: {} in BASE, {} in NEW\n",
                           c.base_other, c.next_other);
    return out;
}

std::string comparison_markdown(const Comparison& c, const std::string& base_name,
                                const std::string& next_name) {
    std::string out = fmt::format("## moba compare\n\nBASE `{}`{}, NEW `{}`{}\n\n", base_name,
                                  c.base_complete ? "" : " (incomplete run)", next_name,
                                  c.next_complete ? "" : " (incomplete run)");
    const auto rows = pair_rows(c);
    if (!rows.empty()) {
        std::string header = "|", rule = "|";
        for (std::size_t k = 0; k < kPairHeader.size(); ++k) {
            header += fmt::format(" {} |", kPairHeader[k]);
            rule += k >= kFirstNumeric && k <= kLastNumeric ? " ---: |" : " --- |";
        }
        out += header + '\n' + rule + '\n';
        for (const auto& row : rows) {
            std::string s = "|";
            for (const auto& cell : row) s += fmt::format(" {} |", md_escape(cell));
            out += s + '\n';
        }
        out += '\n';
    }
    out += summary_line(c) + "\n";
    auto list = [&](const char* title, const std::vector<RecordRef>& refs) {
        if (refs.empty()) return;
        out += fmt::format("\n### {} ({})\n\n", title, refs.size());
        for (const RecordRef& r : refs)
            out += fmt::format("- {}: {}\n", md_escape(ref_text(r)), md_escape(outcome_text(r)));
    };
    list("Only in BASE", c.only_base);
    list("Only in NEW", c.only_next);
    if (!c.not_passed.empty()) {
        out += fmt::format("\n### Matched but not timed in both, outcome not passed ({})\n\n",
                           c.not_passed.size());
        for (const auto& [b, n] : c.not_passed)
            out += fmt::format("- {}: BASE {}; NEW {}\n", md_escape(ref_text(b)),
                               md_escape(outcome_text(b)), md_escape(outcome_text(n)));
    }
    if (c.base_other + c.next_other > 0)
        out += fmt::format("\nNot bench records, not compared: {} in BASE, {} in NEW\n",
                           c.base_other, c.next_other);
    return out;
}

}  // namespace moba
