// `moba compare BASE NEW`: the bench and check records of two reports, matched and judged.
//
// Matching: records of kind "bench" are keyed by (config without "seed", impl, phase, gating),
// records of kind "check" by (config without "seed", impl, check, tensor). Within one key the
// i-th record of BASE pairs with the i-th of NEW; what is left over on either side is listed
// as unmatched. Records of other kinds are counted, not compared.
//
// The threshold is a fraction here (0.05 = 5%); `moba compare --threshold` takes percent.
//
// Verdict of one pair whose records both passed (medians in ms):
//   change = new.median / base.median - 1
//   noise  = max(1%, sqrt(base.rel_stddev^2 + new.rel_stddev^2))   (a null rel_stddev counts 0)
//   |change| <= noise                                    -> same
//   |change| <= threshold (beyond noise, under threshold) -> ambiguous
//   either side's [min_ms, max_ms] holds the other's median -> ambiguous
//   otherwise                                             -> faster (change < 0) or slower
// The threshold defaults to 5%. A pair in which either record did not pass gets no verdict;
// it is listed with both outcomes.
//
// Verdict of one pair of check records (ratio: the record's bound ratio, at most 1 passes):
//   BASE passed, NEW incorrect or failed                  -> regressed
//   BASE incorrect or failed, NEW passed                  -> fixed
//   other outcome changes (skipped, not supported)        -> changed
//   new.ratio - base.ratio >  threshold (both finite)      -> worse
//   new.ratio - base.ratio < -threshold                   -> better
//   otherwise (also: no ratio on either side)             -> same
// The ratio's change is absolute, in units of the bound: threshold 0.05 calls an error that
// grew by more than 5% of its bound worse. regressed and worse are regressions.
//
// Memory of a judged bench pair (peak_memory_bytes, measured; SEMANTICS.md §6): it grew when NEW
// holds more than (1 + threshold) x BASE and more than kMemoryNoiseBytes beyond it. Only records
// that carry allocated_memory_bytes are compared (reports before 2026-12-03 measured another
// quantity), and not those that say memory_disturbed (another process moved free memory during
// the run). Memory that grew is a regression.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/outcome.hpp"

namespace moba {

enum class Verdict { faster, slower, same, ambiguous };
std::string_view to_string(Verdict verdict);

inline constexpr double kDefaultThreshold = 0.05;
inline constexpr double kNoiseFloor = 0.01;
// The driver maps 2 MiB pages and libraries keep workspaces: less than this is not a change.
inline constexpr double kMemoryNoiseBytes = 64.0 * 1024 * 1024;

// What a verdict needs of one side's "timing".
struct TimingStats {
    double median_ms = 0;
    double min_ms = 0;  // NaN when absent: no range test for that side
    double max_ms = 0;
    double rel_stddev = 0;  // 0 when null or absent
};

struct Judgement {
    double change = 0;  // new / base - 1
    double noise = 0;   // combined relative spread, at least kNoiseFloor
    Verdict verdict = Verdict::same;
};
Judgement judge(const TimingStats& base, const TimingStats& next, double threshold);

// What makes two records comparable: (config without "seed", impl, phase, gating) for bench
// records, (config without "seed", impl, check, tensor) for check records, as one string. A
// config without "inputs" counts as "normal" (reports written before input families).
std::string match_key(const nlohmann::json& record);

// A passed bench record's timing; throws std::invalid_argument naming `file` and
// "/records/<index>/timing/median_ms" when the median is missing or not positive.
TimingStats timing_stats(const nlohmann::json& record, std::size_t index, const std::string& file);

// One record as the tables show it.
struct RecordRef {
    std::size_t index = 0;  // position in its report's "records"
    std::string config;     // describe_config()
    std::string impl, phase, gating, outcome, reason;
    std::string check, tensor;  // check records only
};

enum class CheckVerdict { same, better, worse, fixed, regressed, changed };
std::string_view to_string(CheckVerdict verdict);

struct CheckPair {
    RecordRef base, next;
    double base_ratio = 0, next_ratio = 0;  // NaN when absent or null
    CheckVerdict verdict = CheckVerdict::same;
};
// The verdict of a check pair (rule above); an outcome that is absent counts as failed.
CheckVerdict judge_check(Outcome base, double base_ratio, Outcome next, double next_ratio,
                         double threshold);

struct PairResult {
    RecordRef base, next;
    TimingStats base_timing, next_timing;
    Judgement judgement;
    double base_memory = 0, next_memory = 0;  // measured bytes; NaN when not comparable
    bool memory_grew = false;
};
// The memory rule above; NaN on either side is never growth.
bool memory_grew(double base_bytes, double next_bytes, double threshold);

struct Comparison {
    double threshold = kDefaultThreshold;
    std::vector<PairResult> pairs;                            // both passed: judged
    std::vector<std::pair<RecordRef, RecordRef>> not_passed;  // matched, either side not passed
    std::vector<RecordRef> only_base, only_next;
    std::vector<CheckPair> check_pairs;  // matched check records, every one judged
    std::vector<RecordRef> check_only_base, check_only_next;
    std::size_t base_other = 0, next_other = 0;  // records neither "bench" nor "check"
    std::size_t base_records = 0, next_records = 0;
    bool base_complete = true, next_complete = true;

    double geomean_ratio() const;  // new / base over judged pairs; NaN when there are none
    std::size_t count(Verdict v) const;
    std::size_t count(CheckVerdict v) const;
    // Pairs of records matched, judged or not (bench and check).
    std::size_t matched() const { return pairs.size() + not_passed.size() + check_pairs.size(); }
    std::size_t memory_growths() const;
    // Failures BASE did not have that no pair judges: a check record only in NEW that is
    // incorrect or failed (a configuration BASE did not run, or a record a check writes only
    // when something is wrong), a bench record only in NEW that is, and a matched bench record
    // that passed in BASE and is incorrect or failed in NEW.
    std::vector<RecordRef> new_failures() const;
    bool regression() const {
        return count(Verdict::slower) + count(CheckVerdict::regressed) + count(CheckVerdict::worse) +
                   memory_growths() + new_failures().size() > 0;
    }
};

// Why nothing matched, naming both files and what each holds: for `moba compare`'s refusal of
// an empty comparison.
std::string empty_comparison_message(const Comparison& c, const std::string& base_name,
                                     const std::string& next_name);

// base and next are loaded reports (load_report). Throws std::invalid_argument naming
// `base_name` or `next_name` and the record's pointer when a passed bench record lacks a
// usable timing ("/records/3/timing/median_ms").
Comparison compare_reports(const nlohmann::json& base, const nlohmann::json& next, double threshold,
                           const std::string& base_name, const std::string& next_name);

// The terminal table and the markdown table of the same content.
std::string comparison_text(const Comparison& c, const std::string& base_name,
                            const std::string& next_name);
std::string comparison_markdown(const Comparison& c, const std::string& base_name,
                                const std::string& next_name);

}  // namespace moba
