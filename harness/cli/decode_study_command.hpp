// `moba decode-study`: the decode IO trade-off table of issue 19, CPU side (SEMANTICS.md §9.1).
// For every point of the grid layouts x cache lengths x batches x blocks x top-k x input
// families: the float64 selection of the new tokens and the KV bytes a step reads (distinct
// blocks per kv group, measured and ideal ratios to dense decode, the union and vote variants).
// Every grid point is checked before any work (bad flags and points too large for host memory:
// exit 2, naming the value); the report is rewritten after every point. Time per step and the
// speedup over dense decode need the decode kernels: not measured, and the report says so.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
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
};

CLI::App* add_decode_study_command(CLI::App& app, DecodeStudyFlags& flags);
int run_decode_study(const DecodeStudyFlags& flags, const std::vector<std::string>& argv);

// "32:32,32:8" -> {(32, 32), (32, 8)}. Throws std::invalid_argument naming the element that is
// not Hq:Hkv with positive counts and Hkv dividing Hq.
std::vector<std::pair<int, int>> parse_layouts(std::string_view text);
// Every point of the grid, checked: shapes (Problem's rules), q_len, and the host memory
// estimate against half of this machine's RAM. Throws std::invalid_argument naming the value.
std::vector<DecodeStudyPoint> decode_study_grid(const DecodeStudyFlags& flags);

}  // namespace moba::cli
