#include "harness/cli/decode_study_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <stdexcept>

#include "harness/cli/parse.hpp"
#include "harness/device.hpp"
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
    fmt::print("{:<7} {:>6} {:>5} {:>9} {:<9} {:>11} {:>9} {:>9} {:>9} {:>7} {:>9} {:>10} {:>10} {:>10} {:>8}\n",
               "layout", "cache", "batch", "block/k", "inputs", "blocks/grp", "measured", "ideal", "vote IO",
               "recall", "union+/h", "step ms", "attend ms", "dense ms", "speedup");
    const bool several_dense = std::any_of(records.begin(), records.end(), [](const DecodeIoRecord& r) {
        return r.timing && r.timing->dense_all.size() > 1;
    });
    for (const DecodeIoRecord& r : records) {
        const DecodeStudyPoint& p = r.point;
        const bool timed = r.timing && r.timing_note.empty();
        auto ms = [&](const Timing& t) {
            return timed ? fmt::format("{:.4f}{}", t.median_ms, t.under_sampled ? "*" : "") : std::string("-");
        };
        fmt::print(
            "{:<7} {:>6} {:>5} {:>9} {:<9} {:>11.2f} {:>9.4f} {:>9.4f} {:>9.4f} {:>7.3f} "
            "{:>9.2f} {:>10} {:>10} {:>10} {:>8}\n",
            fmt::format("{}:{}", p.heads_q, p.heads_kv), length_label(p.cache_len), p.batch,
            fmt::format("{}/{}", p.block, p.topk), to_string(p.inputs), r.io.distinct_blocks_mean(),
            r.io.measured_ratio(), r.io.ideal_ratio(), r.io.vote_ratio(), r.io.vote_recall(),
            r.io.union_extra_blocks_per_head(), ms(r.timing ? r.timing->step : Timing{}),
            ms(r.timing ? r.timing->attend : Timing{}), ms(r.timing ? r.timing->dense : Timing{}),
            timed ? fmt::format("{:.2f}x", r.timing->speedup()) : std::string("-"));
        if (several_dense && timed)
            for (const DenseDecodeTiming& d : r.timing->dense_all)
                fmt::print("        dense {:<20} {}\n", d.impl,
                           d.timing ? fmt::format("{:.4f} ms{}{}", d.timing->median_ms, d.timing->under_sampled ? "*" : "",
                                                  d.impl == r.timing->dense_impl ? " (fastest)" : "")
                                    : d.note);
    }
    fmt::print(
        "IO ratios: KV bytes read per step / dense decode's. step: the MoBA decode step, gating included; "
        "attend: the same given the selection; dense: the fastest dense decode of the same caches; speedup = dense / step "
        "(* marks a median of fewer samples than asked; - not timed, the report's time_per_step says why).\n");
}

}  // namespace

CLI::App* add_decode_study_command(CLI::App& app, DecodeStudyFlags& f) {
    CLI::App* cmd = app.add_subcommand(
        "decode-study",
        "Decode IO study: KV bytes per step from the float64 selection, per head layout; with a GPU the "
        "MoBA decode step timed against dense decodes of the same caches");
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
    cmd->add_option("--impl", f.impl,
                    "With a GPU: the MoBA decode step timed at every point (none: IO only)")
        ->capture_default_str();
    cmd->add_option("--dense", f.dense,
                    "With a GPU: the dense decodes the step is compared with (comma list; the speedup is over "
                    "the fastest; `python -m moba decode-study` adds PyTorch's SDPA)")
        ->capture_default_str();
    cmd->add_option("--max-seconds", f.max_seconds, "Sampling budget of one timed step (at least 5 samples)")
        ->capture_default_str();
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

std::optional<DecodeTimingOptions> decode_timing_options(const DecodeStudyFlags& f, bool gpu_present) {
    if (f.impl == "none") return std::nullopt;
    DecodeTimingOptions o;
    o.impl = find_implementation(f.impl);
    if (!o.impl || !o.impl->has_decode() || o.impl->dense)
        throw std::invalid_argument(fmt::format("--impl '{}' is not a MoBA decode step (known: {})", f.impl,
                                                implementation_names()));
    if (o.impl->decode_max_q_len > 0 && f.q_len > o.impl->decode_max_q_len)
        throw std::invalid_argument(fmt::format("--impl '{}' takes at most {} new token(s) per request, not --q-len {}",
                                                f.impl, o.impl->decode_max_q_len, f.q_len));
    if (f.dense.empty()) throw std::invalid_argument("--dense is empty");
    for (std::string_view name : split_list(f.dense)) {
        const Implementation* dense = find_implementation(name);
        if (!dense || !dense->has_decode() || !dense->dense)
            throw std::invalid_argument(fmt::format("--dense '{}' is not a dense decode (known: {})", name,
                                                    implementation_names()));
        if (std::find(o.dense.begin(), o.dense.end(), dense) == o.dense.end()) o.dense.push_back(dense);
    }
    if (!(f.max_seconds > 0)) throw std::invalid_argument(fmt::format("--max-seconds {} must be positive", f.max_seconds));
    o.timing.min_samples = 5;
    o.timing.max_samples = 200;
    o.timing.max_seconds = f.max_seconds;
    if (!gpu_present) return std::nullopt;
    return o;
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
    std::optional<DecodeTimingOptions> gpu = decode_timing_options(f, device_info().present);
    ReportWriter report(f.out, "decode-study", argv);
    report.flush();
    std::vector<DecodeIoRecord> records;
    for (std::size_t i = 0; i < grid.size(); ++i) {
        const DecodeStudyPoint& p = grid[i];
        DecodeIoRecord record = run_decode_study_record(p, gpu ? &*gpu : nullptr);
        report.add(record);
        report.flush();
        fmt::print(stderr,
                   "[{}/{}] {}:{} cache {} batch {} block {} topk {} {}: measured IO {:.4f}, ideal "
                   "{:.4f}{} ({:.1f} s)\n",
                   i + 1, grid.size(), p.heads_q, p.heads_kv, length_label(p.cache_len), p.batch,
                   p.block, p.topk, to_string(p.inputs), record.io.measured_ratio(),
                   record.io.ideal_ratio(),
                   record.timing && record.timing_note.empty()
                       ? fmt::format(", step {:.4f} ms vs dense {:.4f} ms", record.timing->step.median_ms,
                                     record.timing->dense.median_ms)
                       : "; " + record.timing_note,
                   record.seconds);
        records.push_back(std::move(record));
    }
    report.finish();
    print_table(records);
    fmt::print("report: {}\n", f.out);
    const auto failed = std::count_if(records.begin(), records.end(), [](const DecodeIoRecord& r) { return r.gpu_failed; });
    if (failed > 0) {
        fmt::print(stderr, "moba decode-study: {} of {} points failed on the GPU (their time_per_step says why)\n", failed,
                   records.size());
        return 1;
    }
    return 0;
}

}  // namespace moba::cli
