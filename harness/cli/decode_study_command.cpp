#include "harness/cli/decode_study_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <stdexcept>

#include "harness/cli/parse.hpp"
#include "harness/report.hpp"

namespace moba::cli {
namespace {

// A grid point may hold at most this share of the machine's RAM (the rest is the system's and
// the allocator's slack); a larger one is refused before any work.
constexpr double kHostMemoryShare = 0.5;

std::int64_t physical_memory_bytes() {
    return static_cast<std::int64_t>(sysconf(_SC_PHYS_PAGES)) *
           static_cast<std::int64_t>(sysconf(_SC_PAGE_SIZE));
}

std::string gib(std::int64_t bytes) {
    return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
}

std::string length_label(int n) {
    if (n % (1 << 20) == 0) return fmt::format("{}M", n >> 20);
    if (n % (1 << 10) == 0) return fmt::format("{}K", n >> 10);
    return std::to_string(n);
}

void print_table(const std::vector<DecodeIoRecord>& records) {
    fmt::print("{:<7} {:>6} {:>5} {:>9} {:<9} {:>11} {:>9} {:>9} {:>9} {:>7} {:>9}\n", "layout",
               "cache", "batch", "block/k", "inputs", "blocks/grp", "measured", "ideal", "vote IO",
               "recall", "union+/h");
    for (const DecodeIoRecord& r : records) {
        const DecodeStudyPoint& p = r.point;
        fmt::print(
            "{:<7} {:>6} {:>5} {:>9} {:<9} {:>11.2f} {:>9.4f} {:>9.4f} {:>9.4f} {:>7.3f} "
            "{:>9.2f}\n",
            fmt::format("{}:{}", p.heads_q, p.heads_kv), length_label(p.cache_len), p.batch,
            fmt::format("{}/{}", p.block, p.topk), to_string(p.inputs), r.io.distinct_blocks_mean(),
            r.io.measured_ratio(), r.io.ideal_ratio(), r.io.vote_ratio(), r.io.vote_recall(),
            r.io.union_extra_blocks_per_head());
    }
    fmt::print(
        "IO ratios: KV bytes read per step / dense decode's. Time per step and speedup over dense "
        "decode: "
        "not measured (they need the decode kernels).\n");
}

}  // namespace

CLI::App* add_decode_study_command(CLI::App& app, DecodeStudyFlags& f) {
    CLI::App* cmd = app.add_subcommand(
        "decode-study",
        "Decode IO study (CPU): KV bytes per step from the float64 selection, per head layout");
    cmd->add_option("--layouts", f.layouts, "Axis: head layouts Hq:Hkv, e.g. 32:32,32:8,32:1")
        ->capture_default_str();
    cmd->add_option("--cache", f.cache,
                    "Axis: cache lengths per request (new tokens included), e.g. 32K,128K")
        ->capture_default_str();
    cmd->add_option("--batch", f.batch, "Axis: requests per batch")->capture_default_str();
    cmd->add_option("--block", f.block, "Axis: MoBA block sizes")->capture_default_str();
    cmd->add_option("--topk", f.topk, "Axis: top-k (own block included)")->capture_default_str();
    cmd->add_option("--head-dim", f.head_dim, "Head dim")->capture_default_str();
    cmd->add_option("--q-len", f.q_len, "New tokens per request per step")->capture_default_str();
    cmd->add_option("--dtype", f.dtype, "Element type of the cache (bytes per element)")
        ->capture_default_str();
    cmd->add_option("--inputs", f.inputs, "Axis: input families (comma list or all)")
        ->capture_default_str();
    cmd->add_option("--seed", f.seed, "Seed of the inputs")->capture_default_str();
    cmd->add_option("--out", f.out, "JSON report path")->capture_default_str();
    return cmd;
}

std::vector<std::pair<int, int>> parse_layouts(std::string_view text) {
    if (text.empty()) throw std::invalid_argument("--layouts is empty");
    std::vector<std::pair<int, int>> layouts;
    for (std::string_view part : split_list(text)) {
        const std::size_t colon = part.find(':');
        int hq = 0, hkv = 0;
        const auto parse = [](std::string_view s, int& v) {
            const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            return !s.empty() && ec == std::errc() && end == s.data() + s.size() && v > 0;
        };
        if (colon == std::string_view::npos || !parse(part.substr(0, colon), hq) ||
            !parse(part.substr(colon + 1), hkv))
            throw std::invalid_argument(fmt::format(
                "--layouts: '{}' is not Hq:Hkv with positive head counts (in '{}')", part, text));
        if (hq % hkv != 0)
            throw std::invalid_argument(fmt::format(
                "--layouts: '{}': {} kv heads do not divide {} query heads", part, hkv, hq));
        layouts.emplace_back(hq, hkv);
    }
    return layouts;
}

std::vector<DecodeStudyPoint> decode_study_grid(const DecodeStudyFlags& f) {
    const auto layouts = parse_layouts(f.layouts);
    const auto caches = parse_lengths(f.cache, "--cache");
    const auto batches = parse_lengths(f.batch, "--batch");
    const auto blocks = parse_lengths(f.block, "--block");
    const auto topks = parse_lengths(f.topk, "--topk");
    const auto families = parse_input_families(f.inputs);
    const DType dtype = parse_dtype(f.dtype);
    if (f.head_dim < 1)
        throw std::invalid_argument(fmt::format("--head-dim {} must be positive", f.head_dim));
    if (f.q_len < 1)
        throw std::invalid_argument(fmt::format("--q-len {} must be positive", f.q_len));
    const auto budget =
        static_cast<std::int64_t>(kHostMemoryShare * static_cast<double>(physical_memory_bytes()));
    std::vector<DecodeStudyPoint> grid;
    for (const auto& [hq, hkv] : layouts)
        for (int cache : caches)
            for (int batch : batches)
                for (int block : blocks)
                    for (int topk : topks)
                        for (InputFamily family : families) {
                            DecodeStudyPoint p{hq,         hkv,     cache, batch,  block, topk,
                                               f.head_dim, f.q_len, dtype, family, f.seed};
                            try {
                                decode_study_batch(p);
                            } catch (const std::invalid_argument& e) {
                                throw std::invalid_argument(fmt::format(
                                    "{} (grid point: {})", e.what(), decode_study_command(p)));
                            }
                            const std::int64_t bytes = decode_study_host_bytes(p);
                            if (bytes > budget)
                                throw std::invalid_argument(
                                    fmt::format("grid point {}:{} cache {} batch {} needs about {} "
                                                "of host memory, over {} "
                                                "(half of this machine's {}); leave it out or make "
                                                "the batch or cache smaller",
                                                hq, hkv, length_label(cache), batch, gib(bytes),
                                                gib(budget), gib(physical_memory_bytes())));
                            grid.push_back(p);
                        }
    return grid;
}

int run_decode_study(const DecodeStudyFlags& f, const std::vector<std::string>& argv) {
    const std::vector<DecodeStudyPoint> grid =
        decode_study_grid(f);  // throws (exit 2) before any work
    ReportWriter report(f.out, "decode-study", argv);
    report.flush();
    std::vector<DecodeIoRecord> records;
    for (std::size_t i = 0; i < grid.size(); ++i) {
        const DecodeStudyPoint& p = grid[i];
        const auto start = std::chrono::steady_clock::now();
        DecodeIoRecord record{p, run_decode_study_point(p), 0.0};
        record.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        report.add(record);
        report.flush();
        fmt::print(stderr,
                   "[{}/{}] {}:{} cache {} batch {} block {} topk {} {}: measured IO {:.4f}, ideal "
                   "{:.4f} ({:.1f} s)\n",
                   i + 1, grid.size(), p.heads_q, p.heads_kv, length_label(p.cache_len), p.batch,
                   p.block, p.topk, to_string(p.inputs), record.io.measured_ratio(),
                   record.io.ideal_ratio(), record.seconds);
        records.push_back(std::move(record));
    }
    report.finish();
    print_table(records);
    fmt::print("report: {}\n", f.out);
    return 0;
}

}  // namespace moba::cli
