// `moba check`: flags, validation and the run (table on stdout, JSON report on disk).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "harness/check.hpp"
#include "harness/decode_check.hpp"
#include "harness/sanitizer.hpp"

namespace moba::cli {

struct CheckFlags {
    std::string seqlens;
    int heads = 4;
    int kv_heads = 0;  // 0: same as heads (MHA)
    int head_dim = 128;
    int block = 128;
    int topk = 3;
    std::string dtype = "bf16";
    double scale = 0.0;
    std::string impl = "all";
    std::uint64_t seed = 1;
    std::string suite;
    std::string shard;  // "I/N": with --suite, only cases whose index % N == I
    bool gating_only = false;
    bool once = false;  // each implementation's gating, forward and backward called once
    std::string sanitize;  // comma list of compute-sanitizer tools, or all: only sanitizer records
    std::string inputs;  // comma list of input families; "" = normal (one configuration) or all (suites)
    std::string reference = "cpu";
    // Decode (SEMANTICS.md §9): new tokens per request; --seqlens are then the cache lengths.
    std::string q_lens;
    int page_size = 0;  // paged caches with pages of this many tokens (0: packed)
    std::string out = "reports/check.json";
    // The flags given on the command line (add_check_command fills it), so a flag that does not
    // apply is refused rather than dropped silently.
    std::set<std::string> given;
};

CLI::App* add_check_command(CLI::App& app, CheckFlags& flags);

// "I/N" -> {I, N} with 0 <= I < N; throws std::invalid_argument naming the text otherwise.
std::pair<int, int> parse_shard(std::string_view text);

// What the flags ask for, validated. Throws std::invalid_argument naming the bad value.
struct CheckPlan {
    std::vector<CheckCase> cases;
    CheckOptions options;
    std::vector<SanitizerTool> sanitizers;  // non-empty: only sanitizer runs (--sanitize)
    bool suite = false;                     // --suite: cases of many shapes
    // Decode steps instead of prefill cases (--suite decode, or --q-lens): cases is then empty.
    std::vector<DecodeCase> decode_cases;
};
CheckPlan plan_check(const CheckFlags& flags, bool gpu_present);

// Why the plan must not start, before any input is drawn or report written: a single
// configuration whose host memory (over `host_available` bytes; negative: unknown), float64 CPU
// truth or device memory is too large; for a suite, a case over host memory. Empty when fine.
std::string plan_refusal(const CheckPlan& plan, std::int64_t host_available);

// Runs the plan, prints progress and the table, writes the report. Returns the exit status:
// 0 when nothing is incorrect or failed, 1 otherwise; a refusal (plan_refusal, bad flags) throws
// std::invalid_argument (exit 2). SIGINT/SIGTERM leave the report of the cases finished so far,
// marked incomplete, and exit 130/143.
int run_check(const CheckFlags& flags, const std::vector<std::string>& argv);

}  // namespace moba::cli
