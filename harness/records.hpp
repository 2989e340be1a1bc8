// The records of a report (reports/FORMAT.md), one struct per kind:
//   CheckRecord  "kind": "check"  one (implementation, check, tensor) of `moba check`
//   BenchRecord  "kind": "bench"  one (implementation, phase) of `moba bench` / `moba paper`
// Each has exactly one writer, nlohmann's to_json (so `nlohmann::json j = record;` works), and
// both write their problem through the one config writer, config_json. Outcome strings come
// from Outcome's to_string only. The JSON is the report format's; reports/moba-report.schema.json
// validates it, and old reports must keep validating, so a field changes here only with the
// format version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/check.hpp"
#include "harness/compare.hpp"
#include "harness/flops.hpp"
#include "harness/key_sampling.hpp"
#include "harness/outcome.hpp"
#include "harness/timer.hpp"

namespace moba {

// A problem and its seed as every record holds them under "config".
nlohmann::json config_json(const CheckCase& state);

struct CheckRecord {
    CheckCase config;
    std::string impl;
    std::string check;   // gating, forward, backward, zero_sparsity, reference
    std::string tensor;  // out, lse, dq, dk, dv; "selection" for gating; "" when nothing was compared
    ReferenceKind reference = ReferenceKind::cpu;
    std::string command;  // reproduces the record (reproduce_command)
    Outcome outcome = Outcome::failed;
    std::string reason;
    // The figures of a comparison, at most one of the two; their outcome and reason are the
    // record's own (the record_* makers in check.cpp copy them).
    std::optional<TensorCheck> tensor_figures;
    std::optional<GatingCheck> gating_figures;
    std::string bound_kind;  // how `bound` was derived when it is not the §5 rule; "" = not written
    // check "sanitizer": the compute-sanitizer run this record judges (harness/sanitizer.hpp).
    struct Sanitizer {
        std::string tool;
        std::int64_t problems = 0;  // errors or hazards; -1 when no summary was printed
        int exit_status = 0;
        std::vector<std::string> findings;  // the tool's first reports (sanitizer_findings)
    };
    std::optional<Sanitizer> sanitizer_figures;
    // A decode case (SEMANTICS.md §9; config's seqlens are then the cache lengths): the new
    // tokens of each request and the page size of a paged cache (0: packed).
    struct Decode {
        std::vector<int> q_lens;
        int page_size = 0;
    };
    std::optional<Decode> decode;
};
void to_json(nlohmann::json& j, const CheckRecord& r);

// The backward check of a bench record (phases bwd, fwdbwd; SEMANTICS.md §5.3): dq of the
// sampled query rows, dk and dv of sampled key rows, against float64 with the baseline's bounds.
struct BackwardCheckFigures {
    Outcome outcome = Outcome::passed;
    double worst_ratio = 0;          // over dq, dk, dv
    std::int64_t query_rows = 0;     // sampled query tokens (dq)
    std::int64_t key_rows = 0;       // sampled key tokens (dk, dv); 0: none fitted the budget
    std::int64_t attending_rows = 0; // query tokens whose forward the key rows needed
    std::vector<KeyBlock> key_blocks;
    std::int64_t blocks_total = 0;
    std::int64_t blocks_over_budget = 0;  // blocks whose attending work alone exceeds the budget
    KeyBlock most_attended;
    bool most_attended_checked = false;
    bool block_tails = false;             // no whole block fitted: the last tokens of blocks later rows select
    bool last_tokens_only = false;        // no block nor tail fitted: the last tokens of sequences
    double work_budget = 0;
};

// What a timed (passed) bench record adds.
struct BenchMeasurement {
    double check_worst_ratio = 0;     // worst bound ratio of the forward check on sampled rows
    Timing timing;                    // its clock window gives sm_clock_* and throttled
    std::optional<double> gating_ms;  // gating timed on its own (gating "separate")
    // Device memory the run holds at the end of its timed loop, the shared inputs (q, k, v, dout)
    // included and the harness's own copy of the selection left out: measured from free device
    // memory (peak_memory_bytes) and the sum of what the harness allocated (allocated_memory_bytes;
    // what an implementation or its libraries take beyond that shows only in the measurement).
    std::size_t peak_memory_bytes = 0;
    std::size_t allocated_memory_bytes = 0;
    // Non-empty when the measurement cannot be the run's alone (free memory is device-wide): it
    // fell short of what the harness allocated, or it moved during the timed loop. Says by how much.
    std::string memory_disturbed;
};

// The published point a `moba paper` record is set beside.
struct PublishedFigures {
    std::string figure;
    double dense_ms = 0, moba_ms = 0, speedup = 0;
};

struct BenchRecord {
    CheckCase config;
    std::string impl;
    bool dense = false;
    Phase phase = Phase::fwd;
    std::string gating;  // gating_label(): included, separate or none
    double pairs = 0;    // attended (query, key) pairs of this implementation (written as an integer)
    double dense_pairs = 0;
    double flops = 0;
    double gating_flops = 0;
    std::optional<std::string> dense_impl;  // the fastest dense implementation of the phase
    std::optional<double> speedup_vs_dense;
    Outcome check_outcome = Outcome::skipped;
    Outcome outcome = Outcome::skipped;
    std::string reason;
    std::string command;  // reproduces the record (bench_command)
    std::optional<BenchMeasurement> measured;  // set exactly when outcome is passed
    // Which selection the checks and the timed runs used: "own" (the implementation's gating,
    // itself checked on the sampled rows), "naive_gpu" (MoBA without gating of its own: the naive
    // GPU gating's), "full_causal" (dense); empty when no check ran.
    std::string check_selection;
    std::int64_t check_rows = 0;                   // sampled query tokens of the checks
    std::optional<GatingCheck> gating_check;       // the implementation's gating on those rows
    std::optional<BackwardCheckFigures> backward_check;
    std::optional<PublishedFigures> published;
};
void to_json(nlohmann::json& j, const BenchRecord& r);

}  // namespace moba
