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
            text_field(r, "reason"),
            text_field(r, "check"),
            text_field(r, "tensor")};
}

bool is_kind(const json& r, const char* kind) {
    return r.is_object() && r.value("kind", json()) == kind;
}
bool is_bench(const json& r) { return is_kind(r, "bench"); }
bool is_check(const json& r) { return is_kind(r, "check"); }

// The record's outcome as Outcome parses it; absent or unknown counts as failed.
Outcome outcome_of(const json& r) {
    const json o = r.value("outcome", json());
    if (!o.is_string()) return Outcome::failed;
    try {
        return parse_outcome(o.get<std::string>());
    } catch (const std::invalid_argument&) {
        return Outcome::failed;
    }
}
bool passed(const json& r) { return outcome_of(r) == Outcome::passed; }

double ratio_of(const json& r) {
    const json x = r.value("ratio", json());
    return x.is_number() ? x.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

// Does [lo, hi] hold x? A side without a range holds nothing.
bool holds(double lo, double hi, double x) {
    return std::isfinite(lo) && std::isfinite(hi) && lo <= x && x <= hi;
}

std::string percent(double x, bool sign) {
    return sign ? fmt::format("{:+.1f}%", 100 * x) : fmt::format("{:.1f}%", 100 * x);
}

std::string ms(double x) { return fmt::format("{:.4g}", x); }

// The threshold as given, in percent, without rounding it away (0.0005 -> "0.05%").
std::string threshold_text(double x) { return fmt::format("{:g}%", 100 * x); }

std::string summary_line(const Comparison& c) {
    const double g = c.geomean_ratio();
    return fmt::format(
        "{} compared: {} faster, {} slower, {} same, {} ambiguous; geometric mean new/base {} "
        "(threshold {}, noise floor {})",
        c.pairs.size(), c.count(Verdict::faster), c.count(Verdict::slower), c.count(Verdict::same),
        c.count(Verdict::ambiguous), std::isnan(g) ? std::string("n/a") : fmt::format("{:.3f}", g),
        threshold_text(c.threshold), percent(kNoiseFloor, false));
}

// peak_memory_bytes of a record that also says what the harness allocated (the measured kind,
// SEMANTICS.md §6) and was not disturbed by another process; NaN otherwise.
double measured_memory(const json& r) {
    const auto peak = r.find("peak_memory_bytes");
    if (!r.contains("allocated_memory_bytes") || r.contains("memory_disturbed") || peak == r.end() ||
        !peak->is_number())
        return std::numeric_limits<double>::quiet_NaN();
    return peak->get<double>();
}

std::vector<const PairResult*> grown(const Comparison& c) {
    std::vector<const PairResult*> out;
    for (const PairResult& p : c.pairs)
        if (p.memory_grew) out.push_back(&p);
    return out;
}

std::string memory_text(const PairResult& p) {
    constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
    return fmt::format("{:.3f} -> {:.3f} GiB (+{:.1f}%)", p.base_memory / kGiB, p.next_memory / kGiB,
                       100 * (p.next_memory / p.base_memory - 1));
}

std::string ref_text(const RecordRef& r) {
    if (!r.check.empty())
        return fmt::format("{} {} {} {} (record {})", r.config, r.impl, r.check,
                           r.tensor.empty() ? "-" : r.tensor, r.index);
    return fmt::format("{} {} {} {} (record {})", r.config, r.impl, r.phase, r.gating, r.index);
}

std::string ratio_text(double x) {
    return std::isfinite(x) ? fmt::format("{:.3g}", x) : std::string("-");
}

std::string check_summary_line(const Comparison& c) {
    return fmt::format(
        "{} checks compared: {} regressed, {} worse, {} same, {} better, {} fixed, {} changed "
        "(threshold {} of the bound on ratio)",
        c.check_pairs.size(), c.count(CheckVerdict::regressed), c.count(CheckVerdict::worse),
        c.count(CheckVerdict::same), c.count(CheckVerdict::better), c.count(CheckVerdict::fixed),
        c.count(CheckVerdict::changed), threshold_text(c.threshold));
}

bool has_checks(const Comparison& c) {
    return !c.check_pairs.empty() || !c.check_only_base.empty() || !c.check_only_next.empty();
}
bool has_bench(const Comparison& c) {
    return !c.pairs.empty() || !c.not_passed.empty() || !c.only_base.empty() ||
           !c.only_next.empty() || !has_checks(c);
}

// Check pairs worth a line: everything but same.
std::vector<const CheckPair*> notable_checks(const Comparison& c) {
    std::vector<const CheckPair*> out;
    for (const CheckPair& p : c.check_pairs)
        if (p.verdict != CheckVerdict::same) out.push_back(&p);
    return out;
}

std::string check_pair_text(const CheckPair& p) {
    return fmt::format("{}: {}; ratio {} -> {}; BASE {}, NEW {}", to_string(p.verdict),
                       ref_text(p.base), ratio_text(p.base_ratio), ratio_text(p.next_ratio),
                       p.base.outcome, p.next.outcome);
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

std::string match_key(const json& r) {
    json config = r.value("config", json::object());
    if (config.is_object()) {
        config.erase("seed");
        // Reports written before input families existed drew every input from N(0, 1).
        if (!config.contains("inputs")) config["inputs"] = "normal";
    }
    const bool check = r.value("kind", json()) == "check";
    return fmt::format("{}\x1f{}\x1f{}\x1f{}", config.dump(), text_field(r, "impl"),
                       text_field(r, check ? "check" : "phase"),
                       text_field(r, check ? "tensor" : "gating"));
}

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

bool memory_grew(double base_bytes, double next_bytes, double threshold) {
    if (!(base_bytes >= 0) || !(next_bytes >= 0)) return false;  // NaN: not comparable
    return next_bytes > (1 + threshold) * base_bytes && next_bytes - base_bytes > kMemoryNoiseBytes;
}

std::size_t Comparison::memory_growths() const { return grown(*this).size(); }

std::vector<RecordRef> Comparison::new_failures() const {
    auto failing = [](const RecordRef& r) {
        try {
            return is_failure(parse_outcome(r.outcome));
        } catch (const std::invalid_argument&) {
            return true;  // absent or unknown counts as failed, as outcome_of says
        }
    };
    std::vector<RecordRef> out;
    for (const auto* refs : {&check_only_next, &only_next})
        for (const RecordRef& r : *refs)
            if (failing(r)) out.push_back(r);
    for (const auto& [b, n] : not_passed)
        if (b.outcome == "passed" && failing(n)) out.push_back(n);
    return out;
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

std::string_view to_string(CheckVerdict v) {
    switch (v) {
        case CheckVerdict::same:
            return "same";
        case CheckVerdict::better:
            return "better";
        case CheckVerdict::worse:
            return "worse";
        case CheckVerdict::fixed:
            return "fixed";
        case CheckVerdict::regressed:
            return "regressed";
        case CheckVerdict::changed:
            return "changed";
    }
    return "unknown";
}

CheckVerdict judge_check(Outcome base, double base_ratio, Outcome next, double next_ratio,
                         double threshold) {
    if (base == Outcome::passed && is_failure(next)) return CheckVerdict::regressed;
    if (is_failure(base) && next == Outcome::passed) return CheckVerdict::fixed;
    if (base != next && !(is_failure(base) && is_failure(next))) return CheckVerdict::changed;
    if (std::isfinite(base_ratio) && std::isfinite(next_ratio)) {
        const double rise = next_ratio - base_ratio;
        if (rise > threshold) return CheckVerdict::worse;
        if (rise < -threshold) return CheckVerdict::better;
    }
    return CheckVerdict::same;
}

std::size_t Comparison::count(CheckVerdict v) const {
    return static_cast<std::size_t>(std::count_if(check_pairs.begin(), check_pairs.end(),
                                                  [&](const CheckPair& p) { return p.verdict == v; }));
}

std::string empty_comparison_message(const Comparison& c, const std::string& base_name,
                                     const std::string& next_name) {
    auto holds_text = [](std::size_t total, std::size_t bench, std::size_t check) {
        return fmt::format("{} records ({} bench, {} check)", total, bench, check);
    };
    const std::size_t base_bench = c.only_base.size(), next_bench = c.only_next.size();
    const std::size_t base_check = c.check_only_base.size(), next_check = c.check_only_next.size();
    std::string why;
    if (base_bench + base_check == 0 || next_bench + next_check == 0)
        why = "one side has no bench or check records";
    else if ((base_bench == 0 || next_bench == 0) && (base_check == 0 || next_check == 0))
        why = "they hold different kinds of records (bench against check)";
    else
        why = "no record of one has the key of a record of the other (bench: config without seed, "
              "impl, phase, gating; check: config without seed, impl, check, tensor)";
    return fmt::format(
        "nothing to compare: BASE {} holds {}, NEW {} holds {}; no pair matched: {}. Pass "
        "--allow-empty to accept an empty comparison.",
        base_name, holds_text(c.base_records, base_bench, base_check), next_name,
        holds_text(c.next_records, next_bench, next_check), why);
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
    c.base_records = base_records.size();
    c.next_records = next_records.size();

    // NEW's bench and check records by kind and key, in order; a cursor per key consumes them.
    std::map<std::string, std::vector<std::size_t>> next_by_key;
    auto kind_key = [](const json& r) {
        return std::string(is_check(r) ? "c" : "b") + "\x1e" + match_key(r);
    };
    for (std::size_t i = 0; i < next_records.size(); ++i) {
        if (is_bench(next_records[i]) || is_check(next_records[i]))
            next_by_key[kind_key(next_records[i])].push_back(i);
        else
            ++c.next_other;
    }
    std::map<std::string, std::size_t> used;
    std::vector<bool> next_matched(next_records.size(), false);
    for (std::size_t i = 0; i < base_records.size(); ++i) {
        const json& b = base_records[i];
        if (!is_bench(b) && !is_check(b)) {
            ++c.base_other;
            continue;
        }
        const std::string key = kind_key(b);
        const auto it = next_by_key.find(key);
        std::size_t& cursor = used[key];
        if (it == next_by_key.end() || cursor >= it->second.size()) {
            (is_check(b) ? c.check_only_base : c.only_base).push_back(record_ref(b, i));
            continue;
        }
        const std::size_t j = it->second[cursor++];
        next_matched[j] = true;
        const json& n = next_records[j];
        if (is_check(b)) {
            CheckPair p{record_ref(b, i), record_ref(n, j), ratio_of(b), ratio_of(n), {}};
            p.verdict = judge_check(outcome_of(b), p.base_ratio, outcome_of(n), p.next_ratio,
                                    threshold);
            c.check_pairs.push_back(std::move(p));
            continue;
        }
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
        p.base_memory = measured_memory(b);
        p.next_memory = measured_memory(n);
        p.memory_grew = memory_grew(p.base_memory, p.next_memory, threshold);
        c.pairs.push_back(std::move(p));
    }
    for (std::size_t j = 0; j < next_records.size(); ++j)
        if (!next_matched[j] && (is_bench(next_records[j]) || is_check(next_records[j])))
            (is_check(next_records[j]) ? c.check_only_next : c.only_next)
                .push_back(record_ref(next_records[j], j));
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
    if (has_bench(c)) out += fmt::format("\n{}\n", summary_line(c));
    if (const auto more = grown(c); !more.empty()) {
        out += fmt::format("\nMemory grew ({}):\n", more.size());
        for (const PairResult* p : more) out += fmt::format("  {}  {}\n", ref_text(p->next), memory_text(*p));
    }
    if (has_checks(c)) {
        out += fmt::format("\n{}\n", check_summary_line(c));
        for (const CheckPair* p : notable_checks(c)) out += fmt::format("  {}\n", check_pair_text(*p));
    }
    auto list = [&](const char* title, const std::vector<RecordRef>& refs) {
        if (refs.empty()) return;
        out += fmt::format("\n{} ({}):\n", title, refs.size());
        for (const RecordRef& r : refs)
            out += fmt::format("  {}  {}\n", ref_text(r), outcome_text(r));
    };
    list("New failures, a regression: failing in NEW, not in BASE", c.new_failures());
    list("Only in BASE", c.only_base);
    list("Only in NEW", c.only_next);
    list("Checks only in BASE", c.check_only_base);
    list("Checks only in NEW", c.check_only_next);
    if (!c.not_passed.empty()) {
        out += fmt::format("\nMatched but not timed in both, outcome not passed ({}):\n",
                           c.not_passed.size());
        for (const auto& [b, n] : c.not_passed)
            out += fmt::format("  {}\n    BASE {}\n    NEW  {}\n", ref_text(b), outcome_text(b),
                               outcome_text(n));
    }
    if (c.base_other + c.next_other > 0)
        out += fmt::format("\nNeither bench nor check records, not compared: {} in BASE, {} in NEW\n",
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
    if (has_bench(c)) out += summary_line(c) + "\n";
    if (const auto more = grown(c); !more.empty()) {
        out += fmt::format("\n### Memory grew ({})\n\n", more.size());
        for (const PairResult* p : more) out += fmt::format("- {}: {}\n", md_escape(ref_text(p->next)), memory_text(*p));
    }
    if (has_checks(c)) {
        out += fmt::format("\n{}\n", check_summary_line(c));
        const auto notable = notable_checks(c);
        if (!notable.empty()) out += '\n';
        for (const CheckPair* p : notable) out += fmt::format("- {}\n", md_escape(check_pair_text(*p)));
    }
    auto list = [&](const char* title, const std::vector<RecordRef>& refs) {
        if (refs.empty()) return;
        out += fmt::format("\n### {} ({})\n\n", title, refs.size());
        for (const RecordRef& r : refs)
            out += fmt::format("- {}: {}\n", md_escape(ref_text(r)), md_escape(outcome_text(r)));
    };
    list("New failures, a regression: failing in NEW, not in BASE", c.new_failures());
    list("Only in BASE", c.only_base);
    list("Only in NEW", c.only_next);
    list("Checks only in BASE", c.check_only_base);
    list("Checks only in NEW", c.check_only_next);
    if (!c.not_passed.empty()) {
        out += fmt::format("\n### Matched but not timed in both, outcome not passed ({})\n\n",
                           c.not_passed.size());
        for (const auto& [b, n] : c.not_passed)
            out += fmt::format("- {}: BASE {}; NEW {}\n", md_escape(ref_text(b)),
                               md_escape(outcome_text(b)), md_escape(outcome_text(n)));
    }
    if (c.base_other + c.next_other > 0)
        out += fmt::format("\nNeither bench nor check records, not compared: {} in BASE, {} in NEW\n",
                           c.base_other, c.next_other);
    return out;
}

}  // namespace moba
