// `moba bench`: one configuration or a sweep over axes given as comma lists on the command
// line or in a JSON grid file. Each finished record is written to the report at once; a failed
// configuration becomes a record with its reason and the sweep goes on; --resume skips the
// (configuration, implementation, phase) states already in the output.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "harness/bench.hpp"
#include "harness/cli/decode_study_command.hpp"

namespace moba::cli {

struct BenchFlags {
    std::string seqlens;      // one packed batch "4096,1000,17" (not an axis)
    std::string seqlen;       // axis: single-sequence lengths "8K,32K,128K"
    int batch = 1;            // with --seqlen: sequences of that length per batch
    std::string heads = "16";
    std::string kv_heads;     // default: same as heads
    std::string head_dim = "128";
    std::string block = "512";
    std::string topk = "8";
    std::string dtype = "bf16";
    std::string impl = "all";
    std::string phase = "fwd";
    std::string gating = "separate";
    std::uint64_t seed = 1;
    std::string grid;
    bool resume = false;
    std::string out = "reports/bench.json";
    double max_seconds = 10.0;
    double time_cap = 300.0;
    bool cold = false;
    int warmup = 2;
    double warmup_seconds = 0;  // and untimed runs for at least this long (sustained-load clocks)
    int min_samples = 5;
    int max_samples = 100;
    double rel_stddev = 0.02;
    int check_rows = 32;
    int q_len = 0;  // > 0: time decode steps of q_len new tokens over caches of --seqlen tokens
    std::string dense;  // with --q-len: the dense decodes compared (empty: the study's default)
    // The flags given on the command line (add_bench_command fills it), so a flag that does not
    // apply, or that a grid file would override, is refused rather than dropped silently.
    std::set<std::string> given;
};

CLI::App* add_bench_command(CLI::App& app, BenchFlags& flags);

struct BenchPlan {
    std::vector<CheckCase> states;
    BenchOptions options;
};
// Validates everything before any work; throws std::invalid_argument naming the bad value
// (unknown grid keys included).
BenchPlan plan_bench(const BenchFlags& flags);
// Reads a grid file into flags (keys: seqlen, seqlens, batch, heads, kv_heads, head_dim, block,
// topk, dtype, impl, phase, gating, seed); values are strings, numbers or lists of them.
void apply_grid_file(const std::string& path, BenchFlags& flags);

int run_bench_command(const BenchFlags& flags, const std::vector<std::string>& argv);

// --q-len: the decode study's flags for the same axes (layouts --heads x --kv-heads, caches
// --seqlen, batch, block, top-k, one head dim, dtype). Throws std::invalid_argument naming a
// flag that does not apply to a decode step (--phase, --gating, --seqlens, --grid, ...).
DecodeStudyFlags decode_bench_flags(const BenchFlags& flags);

// Why a record with this reproduce command cannot join a --resume run of these flags (measured
// with or without --cold, or after another --warmup-seconds, than asked now), or "".
std::string resume_mismatch(const std::string& command, const BenchFlags& flags);

// Key of a bench record's state for --resume: config (seed included), impl, phase, gating.
std::string state_key(const nlohmann::json& record);

}  // namespace moba::cli
