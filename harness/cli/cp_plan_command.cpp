#include "harness/cli/cp_plan_command.hpp"

#include <fstream>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cli/parse.hpp"
#include "harness/cp_plan.hpp"
#include "harness/device.hpp"
#include "harness/input_families.hpp"
#include "harness/inputs.hpp"
#include "reference/reference.hpp"

namespace moba::cli {
namespace {

// float64 gating of the whole sequence on the CPU costs Hq * D * sum_i b(i) multiply-adds
// (SEMANTICS.md §2); past this the command refuses --gating cpu and says what to shorten.
constexpr double kGatingWorkLimit = 2e10;

double gating_work(const Problem& p) {
    const double len = p.seqlens[0], blocks = p.max_blocks();
    return static_cast<double>(p.heads_q) * p.head_dim * len * blocks / 2;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

CLI::App* add_cp_plan_command(CLI::App& app, CpPlanFlags& f) {
    CLI::App* cmd = app.add_subcommand(
        "cp-plan", "Context-parallel plan of one sequence over N GPUs (zig-zag shards): work, bytes, memory per rank");
    cmd->add_option("--seqlen", f.seqlen, "One sequence length, e.g. 4M")->capture_default_str();
    cmd->add_option("--heads", f.heads, "Query heads")->capture_default_str();
    cmd->add_option("--kv-heads", f.kv_heads, "KV heads")->capture_default_str();
    cmd->add_option("--head-dim", f.head_dim, "Head dim")->capture_default_str();
    cmd->add_option("--block", f.block, "MoBA block size")->capture_default_str();
    cmd->add_option("--topk", f.topk, "Top-k (own block included)")->capture_default_str();
    cmd->add_option("--dtype", f.dtype, "bf16, fp16 or fp32")->capture_default_str();
    cmd->add_option("--gpus", f.gpus, "GPU counts (comma list)")->capture_default_str();
    cmd->add_option("--gating", f.gating,
                    "none: causal work and memory only; cpu: MoBA work and K/V received, from float64 gating "
                    "of drawn inputs (short sequences only)")
        ->capture_default_str();
    cmd->add_option("--inputs", f.inputs, "Input family of the drawn inputs (with --gating cpu)")->capture_default_str();
    cmd->add_option("--seed", f.seed, "Seed of the drawn inputs")->capture_default_str();
    cmd->add_option("--device-gib", f.device_gib, "Memory of one GPU in GiB (default: this GPU's; none: no verdict)");
    cmd->add_option("--out", f.out, "JSON file of the plans");
    return cmd;
}

int run_cp_plan(const CpPlanFlags& f, const std::vector<std::string>& argv) {
    const std::vector<int> lengths = parse_lengths(f.seqlen, "--seqlen");
    if (lengths.size() != 1) throw std::invalid_argument(fmt::format("--seqlen {}: one length", f.seqlen));
    Problem p;
    p.seqlens = lengths;
    p.heads_q = f.heads;
    p.heads_kv = f.kv_heads;
    p.head_dim = f.head_dim;
    p.block = f.block;
    p.topk = f.topk;
    p.dtype = parse_dtype(f.dtype);
    p.validate();
    std::vector<int> gpus = parse_lengths(f.gpus, "--gpus");
    for (int n : gpus)
        if (const Support s = cp_can_shard(p, n); !s.ok) throw std::invalid_argument(fmt::format("--gpus {}: {}", n, s.reason));
    if (f.gating != "none" && f.gating != "cpu")
        throw std::invalid_argument(fmt::format("--gating '{}' is not none or cpu", f.gating));
    const InputFamily family = parse_input_family(f.inputs);
    if (f.device_gib < 0) throw std::invalid_argument(fmt::format("--device-gib {} must be positive", f.device_gib));
    if (f.gating == "cpu" && gating_work(p) > kGatingWorkLimit)
        throw std::invalid_argument(fmt::format(
            "--gating cpu: float64 gating of {} tokens x {} heads costs {:.2g} multiply-adds, over the {:.0g} this "
            "command runs; plan a shorter --seqlen with the same block count, or use --gating none",
            p.seqlens[0], p.heads_q, gating_work(p), kGatingWorkLimit));
    const DeviceInfo& dev = device_info();
    const double device_gib = f.device_gib > 0 ? f.device_gib : dev.present ? dev.memory_bytes / kGiB : 0;

    std::optional<Selection> sel;
    if (f.gating == "cpu") sel = ref::gating(p, make_inputs(p, f.seed, family)).selection;
    nlohmann::json plans = nlohmann::json::array();
    fmt::print("{}: {}\n", p.flags(),
               sel ? fmt::format("selection from float64 gating of {} inputs (seed {})", f.inputs, f.seed)
                   : "no selection (--gating none): causal work and memory only");
    bool all_fit = true;
    for (int n : gpus) {
        const CpPlan plan = zigzag_plan(p, n, sel ? &*sel : nullptr);
        fmt::print("{} GPU{}: chunks of {} tokens; causal imbalance {:.3f}{}\n", n, n > 1 ? "s" : "", plan.chunk,
                   plan.dense_imbalance, sel ? fmt::format(", MoBA imbalance {:.3f}", plan.moba_imbalance) : "");
        fmt::print("  {:>4} {:>10} {:>14} {:>14} {:>11} {:>10} {:>12}\n", "rank", "tokens", "causal pairs", "MoBA pairs",
                   "K/V in MiB", "means MiB", "memory GiB");
        nlohmann::json ranks = nlohmann::json::array();
        for (const CpRank& r : plan.per_rank) {
            const double gib = static_cast<double>(r.moba_memory_bytes) / kGiB;
            const bool fits = device_gib == 0 || gib <= device_gib;
            all_fit = all_fit && fits;
            fmt::print("  {:>4} {:>10} {:>14.4g} {:>14} {:>11} {:>10.2f} {:>12.2f}{}\n", r.rank, r.tokens, r.dense_pairs,
                       sel ? fmt::format("{:.4g}", r.moba_pairs) : "-",
                       sel ? fmt::format("{:.1f}", static_cast<double>(r.kv_bytes_received) / (1 << 20)) : "-",
                       static_cast<double>(r.means_bytes_received) / (1 << 20), gib,
                       fits ? "" : fmt::format("  does not fit {:.1f} GiB", device_gib));
            ranks.push_back({{"rank", r.rank},
                             {"chunks", {{r.chunk_begin[0], r.chunk_end[0]}, {r.chunk_begin[1], r.chunk_end[1]}}},
                             {"tokens", r.tokens},
                             {"dense_pairs", r.dense_pairs},
                             {"moba_pairs", sel ? nlohmann::json(r.moba_pairs) : nlohmann::json()},
                             {"blocks_received", sel ? nlohmann::json(r.blocks_received) : nlohmann::json()},
                             {"kv_bytes_received", sel ? nlohmann::json(r.kv_bytes_received) : nlohmann::json()},
                             {"means_bytes_received", r.means_bytes_received},
                             {"memory_bytes_estimate", r.moba_memory_bytes},
                             {"fits", device_gib > 0 ? nlohmann::json(fits) : nlohmann::json()}});
        }
        plans.push_back({{"gpus", n},
                         {"chunk", plan.chunk},
                         {"dense_imbalance", plan.dense_imbalance},
                         {"moba_imbalance", sel ? nlohmann::json(plan.moba_imbalance) : nlohmann::json()},
                         {"ranks", ranks}});
    }
    fmt::print("memory: a training step's buffers on each rank, estimated from sizes (kernels' layouts; one head "
               "pass's fp32 MoBA accumulator and block lists included, the gating's block means not), not "
               "measured{}\n",
               device_gib > 0 ? fmt::format("; one GPU has {:.1f} GiB", device_gib) : "");
    if (!f.out.empty()) {
        std::string command = "moba";
        for (std::size_t i = 1; i < argv.size(); ++i) command += " " + argv[i];
        const nlohmann::json config{{"seqlen", p.seqlens[0]}, {"heads_q", p.heads_q}, {"heads_kv", p.heads_kv},
                                    {"head_dim", p.head_dim},  {"block", p.block},     {"topk", p.topk},
                                    {"dtype", f.dtype},        {"gating", f.gating},   {"inputs", f.inputs},
                                    {"seed", f.seed}};
        const nlohmann::json doc{{"kind", "cp_plan"}, {"command", command}, {"config", config},
                                 {"device_gib", device_gib}, {"plans", plans}};
        std::ofstream(f.out) << doc.dump(1) << "\n";
        fmt::print("plan: {}\n", f.out);
    }
    return all_fit ? 0 : 1;
}

}  // namespace moba::cli
