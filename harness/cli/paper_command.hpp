// `moba paper --figure 2a|2b`: Figure 2 of the MoBA report reproduced on this GPU — MoBA
// against the fastest dense baseline of the same run at the figure's lengths and settings,
// printed beside the published numbers (SEMANTICS.md §7) and the ideal speedup. A length or
// implementation that does not fit in memory or in the time limit is shown as not run, with
// the reason; nothing is extrapolated into the results.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct PaperFlags {
    std::string figure;
    std::string lengths;  // default: the figure's lengths
    int heads = 32;       // Llama-3.1-8B: 32 query heads, 8 kv heads, D 128, batch 1
    int kv_heads = 8;
    int head_dim = 128;
    std::string impl = "all";
    double max_run_seconds = 20.0;  // skip an implementation predicted to run longer per call
    double max_seconds = 10.0;      // sampling time per state, once the minimum samples are in
    double time_cap = 300.0;        // hard limit per state (may leave a record under_sampled)
    bool cold = false;              // flush L2 before every sample
    int warmup = 2;                 // untimed runs before the samples (one past 2 s a run)
    double warmup_seconds = 0;      // and untimed runs for at least this long (sustained-load clocks)
    std::uint64_t seed = 1;
    std::string out;       // default reports/paper-<figure>.json
    std::string markdown;  // default: the report path with .md
};

CLI::App* add_paper_command(CLI::App& app, PaperFlags& flags);
int run_paper(const PaperFlags& flags, const std::vector<std::string>& argv);

struct PublishedPoint {
    int length;
    double dense_ms, moba_ms, speedup;
};
// SEMANTICS.md §7, values read off the report's plot. Throws std::invalid_argument for another figure.
std::vector<PublishedPoint> published_points(const std::string& figure);

}  // namespace moba::cli
