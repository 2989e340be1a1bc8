// `moba compare BASE NEW`: the bench records of two reports, matched and judged.
//
// Matching: records of kind "bench" are keyed by (config without "seed", impl, phase, gating).
// Within one key the i-th record of BASE pairs with the i-th of NEW; what is left over on
// either side is listed as unmatched. Check records are counted, not compared.
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
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moba {

enum class Verdict { faster, slower, same, ambiguous };
std::string_view to_string(Verdict verdict);

inline constexpr double kDefaultThreshold = 0.05;
inline constexpr double kNoiseFloor = 0.01;

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

// One record as the tables show it.
struct RecordRef {
    std::size_t index = 0;  // position in its report's "records"
    std::string config;     // describe_config()
    std::string impl, phase, gating, outcome, reason;
};

struct PairResult {
    RecordRef base, next;
    TimingStats base_timing, next_timing;
    Judgement judgement;
};

struct Comparison {
    double threshold = kDefaultThreshold;
    std::vector<PairResult> pairs;                            // both passed: judged
    std::vector<std::pair<RecordRef, RecordRef>> not_passed;  // matched, either side not passed
    std::vector<RecordRef> only_base, only_next;
    std::size_t base_other = 0, next_other = 0;  // records not of kind "bench"
    bool base_complete = true, next_complete = true;

    double geomean_ratio() const;  // new / base over judged pairs; NaN when there are none
    std::size_t count(Verdict v) const;
    bool regression() const { return count(Verdict::slower) > 0; }
};

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
