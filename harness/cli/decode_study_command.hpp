// `moba decode-study`: the decode IO trade-off table of issue 19, CPU side (SEMANTICS.md §9.1).
// For every point of the grid layouts x cache lengths x batches x blocks x top-k x input
// families: the float64 selection of the new tokens and the KV bytes a step reads (distinct
// blocks per kv group, measured and ideal ratios to dense decode, the union and vote variants).
// Every grid point is checked before any work (bad flags and points too large for host memory:
// exit 2, naming the value); the report is rewritten after every point. With a GPU, each point's
// MoBA decode step (--impl) is judged against the float64 selection, then timed with its gating
// and without it, beside the dense decodes (--dense) of the same caches; the speedup is over the
// fastest of them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/decode_study.hpp"

namespace moba::cli {

struct DecodeStudyFlags {
    std::string layouts = "32:32,32:8,32:4,32:1";  // Hq:Hkv
    std::string cache = "32K";
    std::string batch = "1";
    std::string block = "512";
    std::string topk = "3";
    int head_dim = 128;
    int q_len = 1;
    std::string dtype = "bf16";
    std::string inputs = "normal";
    std::uint64_t seed = 1;
    std::string out = "reports/decode_study.json";
    // With a GPU: the decode steps timed at every point ("none": the IO alone).
    std::string impl = "split_decode";
    std::string dense = "split_decode_dense";  // comma list
    double max_seconds = 2.0;  // sampling budget of one timed step, once 5 samples are in
};

CLI::App* add_decode_study_command(CLI::App& app, DecodeStudyFlags& flags);
int run_decode_study(const DecodeStudyFlags& flags, const std::vector<std::string>& argv);

// "32:32,32:8" -> {(32, 32), (32, 8)}. Throws std::invalid_argument naming the element that is
// not Hq:Hkv with positive counts and Hkv dividing Hq.
std::vector<std::pair<int, int>> parse_layouts(std::string_view text);
// Every point of the grid, checked: shapes (Problem's rules), q_len, and the host memory
// estimate against half of this machine's RAM. Throws std::invalid_argument naming the value.
std::vector<DecodeStudyPoint> decode_study_grid(const DecodeStudyFlags& flags);
// The steps to time: --impl (a MoBA decode entry) and --dense (dense ones), checked by name
// whether or not a GPU is present (throws std::invalid_argument naming the value); nullopt with
// --impl none or without a GPU.
std::optional<DecodeTimingOptions> decode_timing_options(const DecodeStudyFlags& flags, bool gpu_present);

}  // namespace moba::cli
