// `moba bench`: times registered implementations on one configuration after checking them on
// sampled rows against the float64 reference (SEMANTICS.md §5.2, §5.3): an implementation with
// gating runs it once, its selection is judged on the sampled query tokens against float64
// gating, and that selection is the one the forward (and backward) checks use and the timed
// runs use; after timing the selection on the device must still be bitwise the checked one.
// Phases that run backward are timed only after dq of the sampled query rows and dk, dv of
// sampled key rows pass. Inputs are drawn on the device. Every record carries the command line
// that reproduces it. Speed is counted per SEMANTICS.md §6 (harness/flops.hpp). Records are
// BenchRecords (harness/records.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/check.hpp"
#include "harness/flops.hpp"
#include "harness/records.hpp"
#include "harness/timer.hpp"

namespace moba {

enum class GatingMode { included, separate };
std::string_view to_string(GatingMode mode);
GatingMode parse_gating_mode(std::string_view text);

struct BenchOptions {
    std::vector<const Implementation*> impls;
    std::vector<Phase> phases = {Phase::fwd};
    GatingMode gating = GatingMode::separate;
    TimingOptions timing;
    int check_rows = 32;  // sampled query tokens of the gating, forward and dq checks (fewer for huge rows)
    // Called after each implementation of a state with the state's records so far, speedups
    // among the implementations done (none before a dense one is): a run stopped in a state's
    // later implementation keeps the earlier ones' measurements (a dense 1M fwd+bwd takes
    // minutes after a MoBA one of seconds).
    std::function<void(const std::vector<nlohmann::json>&)> on_implementation_done;
};

// One record per (implementation, phase). Failures become records (outcome failed, with the
// reason); nothing throws for one implementation's sake.
std::vector<BenchRecord> bench_records(const CheckCase& state, const BenchOptions& options);
// The same records as JSON.
std::vector<nlohmann::json> run_bench(const CheckCase& state, const BenchOptions& options);

// A record of that state with every field but the measurements: outcome skipped until set.
// `cold`: the samples were taken with L2 flushed (--cold), said in the reproduce command.
// `warmup_seconds` > 0: --warmup-seconds, said in the command too.
BenchRecord bench_record_skeleton(const CheckCase& state, const Implementation& impl, Phase phase,
                                  GatingMode gating, bool cold = false, double warmup_seconds = 0);

// What a record's "gating" says: none for implementations without gating and for the
// backward phase alone, else the mode.
std::string gating_label(const Implementation& impl, Phase phase, GatingMode gating);

std::string bench_command(const CheckCase& state, const std::string& impl, Phase phase, GatingMode gating,
                          bool cold = false, double warmup_seconds = 0);

}  // namespace moba
