// `moba bench`: flags, grid files and sweeps planned into states, --resume, progress and the report.
#include "harness/cli/bench_command.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <unistd.h>

#include "harness/cli/parse.hpp"
#include "harness/device.hpp"
#include "harness/records.hpp"
#include "harness/report.hpp"

namespace moba::cli {

CLI::App* add_bench_command(CLI::App& app, BenchFlags& f) {
    CLI::App* cmd = app.add_subcommand("bench", "Time implementations (after checking them on sampled rows) on one configuration or a sweep");
    cmd->add_option("--seqlens", f.seqlens, "One packed varlen batch, e.g. 4096,1000,17");
    cmd->add_option("--seqlen", f.seqlen, "Sweep axis: single-sequence lengths, e.g. 8K,32K,128K");
    cmd->add_option("--batch", f.batch, "With --seqlen: sequences per batch")->capture_default_str();
    cmd->add_option("--heads", f.heads, "Axis: query heads")->capture_default_str();
    cmd->add_option("--kv-heads", f.kv_heads, "Axis: kv heads (default: --heads)");
    cmd->add_option("--head-dim", f.head_dim, "Axis: head dims")->capture_default_str();
    cmd->add_option("--block", f.block, "Axis: MoBA block sizes")->capture_default_str();
    cmd->add_option("--topk", f.topk, "Axis: top-k")->capture_default_str();
    cmd->add_option("--dtype", f.dtype, "Axis: bf16, fp16, fp32")->capture_default_str();
    cmd->add_option("--impl", f.impl, "Implementations (comma list or all)")->capture_default_str();
    cmd->add_option("--phase", f.phase, "Phases: fwd, bwd, fwdbwd (comma list)")->capture_default_str();
    cmd->add_option("--gating", f.gating, "included: gating inside the timed region; separate: timed on its own")
        ->capture_default_str();
    cmd->add_option("--seed", f.seed, "Seed of the inputs")->capture_default_str();
    cmd->add_option("--grid", f.grid, "JSON grid file of axes (an axis flag it also names is an error)");
    cmd->add_flag("--resume", f.resume, "Skip states already in --out, keep its records");
    cmd->add_option("--out", f.out, "JSON report path")->capture_default_str();
    cmd->add_option("--max-seconds", f.max_seconds,
                    "Sampling time per state once --min-samples are in")->capture_default_str();
    cmd->add_option("--time-cap", f.time_cap,
                    "Hard sampling limit per state, the only one that may stop before --min-samples "
                    "(the record then says under_sampled)")->capture_default_str();
    cmd->add_flag("--cold", f.cold, "Flush L2 (overwrite twice its size) before every sample");
    cmd->add_option("--warmup", f.warmup,
                    "Untimed runs before the samples (one is enough past 2 s a run; 0: the check's run warms up, "
                    "for runs of a minute)")
        ->capture_default_str();
    cmd->add_option("--warmup-seconds", f.warmup_seconds,
                    "And untimed runs until this many seconds have passed, so every implementation is timed at the "
                    "clocks of sustained load rather than a cool GPU's boost (fair same-process ratios); said in each "
                    "record's command")
        ->capture_default_str();
    cmd->add_option("--min-samples", f.min_samples, "Samples before convergence is tested")->capture_default_str();
    cmd->add_option("--max-samples", f.max_samples, "Sample limit per state")->capture_default_str();
    cmd->add_option("--rel-stddev", f.rel_stddev, "Stop once the relative std dev is below this")->capture_default_str();
    cmd->add_option("--check-rows", f.check_rows, "Sampled query rows of the gating, forward and dq checks")->capture_default_str();
    cmd->add_option("--q-len", f.q_len,
                    "Decode: time one step of this many new tokens per sequence over caches of --seqlen tokens "
                    "(split_decode against split_decode_dense, each step's selection checked against float64 first; "
                    "the records are moba decode-study's)");
    cmd->add_option("--dense", f.dense,
                    "With --q-len: the dense decodes the step is compared with (comma list; the speedup is over "
                    "the fastest)");
    for (CLI::Option* opt : cmd->get_options()) {
        const std::string name = opt->get_name();
        if (name.starts_with("--") && name != "--help") opt->each([&f, name](const std::string&) { f.given.insert(name); });
    }
    return cmd;
}

namespace {

std::vector<std::string> split_list(const std::string& text, const char* what) {
    if (text.empty()) throw std::invalid_argument(fmt::format("{} is empty", what));
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = text.find(',', start);
        parts.push_back(text.substr(start, comma == std::string::npos ? comma : comma - start));
        if (parts.back().empty()) throw std::invalid_argument(fmt::format("{}: empty element in '{}'", what, text));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return parts;
}

std::vector<int> int_list(const std::string& text, const char* what) { return parse_lengths(text, what); }

// A grid value: a string, a number or a list of them, turned into the flags' comma form.
std::string grid_value(const nlohmann::json& v, const std::string& key) {
    auto scalar = [&](const nlohmann::json& x) -> std::string {
        if (x.is_string()) return x.get<std::string>();
        if (x.is_number_integer()) return std::to_string(x.get<std::int64_t>());
        throw std::invalid_argument(fmt::format("grid key '{}': {} is not a string or an integer", key, x.dump()));
    };
    if (!v.is_array()) return scalar(v);
    if (v.empty()) throw std::invalid_argument(fmt::format("grid key '{}' is an empty list", key));
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ",") + scalar(x);
    return out;
}

}  // namespace

void apply_grid_file(const std::string& path, BenchFlags& f) {
    std::ifstream in(path);
    if (!in) throw std::invalid_argument(fmt::format("cannot read grid file '{}'", path));
    nlohmann::json grid;
    try {
        grid = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
        throw std::invalid_argument(fmt::format("grid file '{}' is not valid JSON: {}", path, e.what()));
    }
    if (!grid.is_object()) throw std::invalid_argument(fmt::format("grid file '{}' must hold a JSON object", path));
    for (const auto& [key, value] : grid.items()) {
        std::string flag = "--" + key;
        std::replace(flag.begin(), flag.end(), '_', '-');
        if (f.given.count(flag))
            throw std::invalid_argument(fmt::format("grid file '{}' sets '{}' and {} is given too; the grid would "
                                                    "override the flag: drop one",
                                                    path, key, flag));
        const std::string v = grid_value(value, key);
        if (key == "seqlen") f.seqlen = v;
        else if (key == "seqlens") f.seqlens = v;
        else if (key == "batch") f.batch = parse_lengths(v, "grid key 'batch'").at(0);
        else if (key == "heads") f.heads = v;
        else if (key == "kv_heads") f.kv_heads = v;
        else if (key == "head_dim") f.head_dim = v;
        else if (key == "block") f.block = v;
        else if (key == "topk") f.topk = v;
        else if (key == "dtype") f.dtype = v;
        else if (key == "impl") f.impl = v;
        else if (key == "phase") f.phase = v;
        else if (key == "gating") f.gating = v;
        else if (key == "seed") f.seed = static_cast<std::uint64_t>(parse_lengths(v, "grid key 'seed'").at(0));
        else
            throw std::invalid_argument(fmt::format(
                "grid file '{}': unknown key '{}' (known: seqlen, seqlens, batch, heads, kv_heads, head_dim, block, "
                "topk, dtype, impl, phase, gating, seed)", path, key));
    }
}

BenchPlan plan_bench(const BenchFlags& given) {
    BenchFlags f = given;
    if (!f.grid.empty()) apply_grid_file(f.grid, f);
    BenchPlan plan;
    for (const auto& name : parse_impl_list(f.impl)) plan.options.impls.push_back(find_implementation(name));
    if (f.impl == "all")  // every entry with a prefill forward; decode is timed by decode-study
        std::erase_if(plan.options.impls, [](const Implementation* impl) { return !impl->has_forward(); });
    plan.options.phases.clear();  // replace the default
    for (const auto& ph : split_list(f.phase, "--phase")) plan.options.phases.push_back(parse_phase(ph));
    plan.options.gating = parse_gating_mode(f.gating);
    if (f.max_seconds <= 0) throw std::invalid_argument(fmt::format("--max-seconds {} must be positive", f.max_seconds));
    if (f.min_samples < 1 || f.max_samples < f.min_samples)
        throw std::invalid_argument(fmt::format("samples: need 1 <= --min-samples ({}) <= --max-samples ({})",
                                                f.min_samples, f.max_samples));
    if (f.warmup < 0) throw std::invalid_argument(fmt::format("--warmup {} must be 0 or more", f.warmup));
    check_warmup_seconds(f.warmup_seconds);
    if (f.check_rows < 1) throw std::invalid_argument(fmt::format("--check-rows {} must be positive", f.check_rows));
    if (f.batch < 1) throw std::invalid_argument(fmt::format("--batch {} must be positive", f.batch));
    plan.options.timing.max_seconds = f.max_seconds;
    if (!(f.time_cap > 0)) throw std::invalid_argument(fmt::format("--time-cap {} must be positive", f.time_cap));
    plan.options.timing.cap_seconds = f.time_cap;
    plan.options.timing.cold = f.cold;
    plan.options.timing.warmup = f.warmup;
    plan.options.timing.warmup_seconds = f.warmup_seconds;
    plan.options.timing.min_samples = f.min_samples;
    plan.options.timing.max_samples = f.max_samples;
    plan.options.timing.target_rel_stddev = f.rel_stddev;
    plan.options.check_rows = f.check_rows;

    std::vector<std::vector<int>> batches;
    if (!f.seqlens.empty() && !f.seqlen.empty()) throw std::invalid_argument("give --seqlens (one batch) or --seqlen (axis), not both");
    if (f.given.count("--batch") && f.seqlen.empty())
        throw std::invalid_argument("--batch applies only with --seqlen (sequences of that length per batch); "
                                    "--seqlens gives the whole batch");
    if (!f.seqlens.empty()) batches.push_back(parse_lengths(f.seqlens, "--seqlens"));
    else if (!f.seqlen.empty())
        for (int len : int_list(f.seqlen, "--seqlen")) batches.emplace_back(static_cast<std::size_t>(f.batch), len);
    else throw std::invalid_argument("give --seqlen (sweep axis), --seqlens (one batch) or --grid");

    const auto heads = int_list(f.heads, "--heads");
    const auto kv_list = f.kv_heads.empty() ? std::vector<int>{0} : int_list(f.kv_heads, "--kv-heads");
    for (const auto& lens : batches)
        for (int hq : heads)
            for (int hkv : kv_list)
                for (int d : int_list(f.head_dim, "--head-dim"))
                    for (int bs : int_list(f.block, "--block"))
                        for (int k : int_list(f.topk, "--topk"))
                            for (const auto& dt : split_list(f.dtype, "--dtype")) {
                                Problem p;
                                p.seqlens = lens;
                                p.heads_q = hq;
                                p.heads_kv = hkv == 0 ? hq : hkv;
                                p.head_dim = d;
                                p.block = bs;
                                p.topk = k;
                                p.dtype = parse_dtype(dt);
                                p.validate();
                                plan.states.push_back({p, f.seed});
                            }
    return plan;
}

std::string state_key(const nlohmann::json& r) {
    nlohmann::json c = r["config"];
    return c.dump() + "|" + r["impl"].get<std::string>() + "|" + r["phase"].get<std::string>() + "|" +
           r.value("gating", std::string());
}

namespace {

std::string describe(const Problem& p) {
    return fmt::format("{} {}x{} {} D{} L={}{} Bs={} k={}", head_layout(p.heads_q, p.heads_kv), p.heads_q, p.heads_kv,
                       to_string(p.dtype), p.head_dim, p.seqlens.front(), p.batch() > 1 ? fmt::format("x{}", p.batch()) : "",
                       p.block, p.topk);
}

std::string fmt_duration(double secs) {
    if (secs < 90) return fmt::format("{:.0f}s", secs);
    return fmt::format("{:.0f}m{:02.0f}s", std::floor(secs / 60), std::fmod(secs, 60));
}

// Whether a record (read back from a report, or just written) has the given outcome.
// (Compared as text: an odd string in a resumed file is no match rather than an error.)
bool has_outcome(const nlohmann::json& r, Outcome o) { return r["outcome"] == std::string(to_string(o)); }

void print_line(const nlohmann::json& r) {
    const std::string outcome = r["outcome"].get<std::string>();
    if (!has_outcome(r, Outcome::passed)) {
        fmt::print("  {:<13} {:<6} {:<13} {}\n", r["impl"].get<std::string>(), r["phase"].get<std::string>(), outcome,
                   r["reason"].get<std::string>().substr(0, 160));
        return;
    }
    const auto& t = r["timing"];
    // A median of fewer samples than asked is marked where it is printed, not only in the JSON.
    const std::string under = t.value("under_sampled", false)
                                  ? fmt::format("  UNDER-SAMPLED ({} of {})", t["samples"].get<int>(),
                                                t["min_samples"].get<int>())
                                  : "";
    // What the backward check covered, where a popular block was left out.
    std::string bwd;
    if (r.contains("backward_check")) {
        const auto& b = r["backward_check"];
        const std::string from = b.value("last_tokens_only", false) ? "the sequences' last tokens"
                                 : fmt::format("{} block{}", b["key_blocks"].size(), b.value("block_tails", false) ? " tails" : "s");
        bwd = fmt::format("  [bwd check: dq {} rows, dk/dv {} keys of {}{}]", b["query_rows"].get<std::int64_t>(),
                          b["key_rows"].get<std::int64_t>(), from,
                          b["most_attended_checked"].get<bool>()
                              ? ""
                              : fmt::format(", most attended block {} not checked", b["most_attended"]["block"].get<std::int64_t>()));
    }
    // Measured device memory of the run, inputs included (SEMANTICS.md §6).
    const std::string memory = r.contains("peak_memory_bytes") && r["peak_memory_bytes"].is_number()
                                   ? fmt::format("{:>7.2f} GiB{}", r["peak_memory_bytes"].get<double>() / (1 << 30),
                                                 r.contains("memory_disturbed") ? " (DISTURBED)" : "")
                                   : "";
    fmt::print("  {:<13} {:<6} {:>10.3f} ms ±{:>4.1f}% {:>8.1f} TFLOP/s  x{:<6} ideal x{:<6.2f} {}{}{}{}\n",
               r["impl"].get<std::string>(), r["phase"].get<std::string>(), t["median_ms"].get<double>(),
               100 * t["rel_stddev"].get<double>(), r["tflops"].get<double>(),
               r["speedup_vs_dense"].is_number() ? fmt::format("{:.2f}", r["speedup_vs_dense"].get<double>()) : "-",
               r["ideal_speedup"].get<double>(), memory, r["throttled"].get<bool>() ? "  THROTTLED" : "", under, bwd);
}

}  // namespace

std::string resume_mismatch(const std::string& command, const BenchFlags& f) {
    // Warm and cold samples are different measurements: a resumed sweep keeps to one.
    const bool was_cold = command.find(" --cold") != std::string::npos;
    if (was_cold != f.cold)
        return fmt::format("was measured {0} --cold; run {0} it", was_cold ? "with" : "without");
    // So are samples after different warm-ups (--warmup-seconds moves the clocks they see).
    const std::string flag = " --warmup-seconds ";
    const std::size_t at = command.find(flag);
    const std::size_t value = at + flag.size();
    const std::string was_warmed = at == std::string::npos ? "0" : command.substr(value, command.find(' ', value) - value);
    if (was_warmed != fmt::format("{}", f.warmup_seconds))
        return fmt::format("was measured with --warmup-seconds {}, not {}; run with that", was_warmed, f.warmup_seconds);
    return {};
}

DecodeStudyFlags decode_bench_flags(const BenchFlags& f) {
    for (const char* flag : {"--seqlens", "--phase", "--gating", "--grid", "--resume", "--time-cap", "--cold",
                             "--warmup", "--warmup-seconds", "--min-samples", "--max-samples", "--rel-stddev", "--check-rows"})
        if (f.given.count(flag))
            throw std::invalid_argument(fmt::format("{} does not apply to a decode step (--q-len); drop it", flag));
    if (f.q_len < 1) throw std::invalid_argument(fmt::format("--q-len {} must be positive", f.q_len));
    if (f.seqlen.empty()) throw std::invalid_argument("--q-len needs --seqlen: the cache lengths");
    DecodeStudyFlags s;
    s.layouts.clear();
    for (const std::string& hq : split_list(f.heads, "--heads"))
        for (const std::string& hkv : split_list(f.kv_heads.empty() ? hq : f.kv_heads, "--kv-heads"))
            s.layouts += (s.layouts.empty() ? "" : ",") + hq + ":" + hkv;
    s.cache = f.seqlen;
    s.batch = std::to_string(f.batch);
    s.block = f.block;
    s.topk = f.topk;
    const std::vector<int> dims = int_list(f.head_dim, "--head-dim");
    if (dims.size() != 1) throw std::invalid_argument("--q-len takes one --head-dim, not " + f.head_dim);
    s.head_dim = dims[0];
    s.q_len = f.q_len;
    s.dtype = f.dtype;
    s.seed = f.seed;
    s.out = f.out;
    s.max_seconds = f.max_seconds;
    if (f.impl != "all") s.impl = f.impl;
    if (!f.dense.empty()) s.dense = f.dense;
    return s;
}

int run_bench_command(const BenchFlags& flags, const std::vector<std::string>& argv) {
    if (flags.given.count("--dense") && !flags.given.count("--q-len"))
        throw std::invalid_argument("--dense names dense decodes: it applies with --q-len only");
    if (flags.given.count("--q-len")) {
        const DecodeStudyFlags study = decode_bench_flags(flags);
        decode_study_grid(study);  // refusals before the GPU is looked at
        if (!device_info().present) {
            fmt::print(stderr, "moba bench: no GPU found ({}); nothing can be timed.\n", device_info().reason);
            return 1;
        }
        return run_decode_study(study, argv);
    }
    const BenchPlan plan = plan_bench(flags);
    const DeviceInfo& dev = device_info();
    if (!dev.present) {
        fmt::print(stderr, "moba bench: no GPU found ({}); nothing can be timed.\n", dev.reason);
        return 1;
    }
    // --resume: keep the records of the previous run and skip its states.
    std::vector<nlohmann::json> previous;
    std::set<std::string> done;
    if (flags.resume && std::filesystem::exists(flags.out)) {
        std::ifstream in(flags.out);
        nlohmann::json old;
        try {
            old = nlohmann::json::parse(in);
        } catch (const std::exception& e) {
            throw std::invalid_argument(fmt::format("--resume: '{}' is not a readable report: {}", flags.out, e.what()));
        }
        if (old.value("format", "") != kReportFormat)
            throw std::invalid_argument(fmt::format("--resume: '{}' is not a {} file", flags.out, kReportFormat));
        for (const auto& r : old["records"]) {
            if (r.value("kind", "") != "bench") continue;
            const std::string mismatch = resume_mismatch(r.value("command", ""), flags);
            if (!mismatch.empty())
                throw std::invalid_argument(fmt::format("--resume: '{}' {}; write to another --out", flags.out, mismatch));
            previous.push_back(r);
            if (!has_outcome(r, Outcome::failed)) done.insert(state_key(r));  // failed states are retried
        }
    }
    ReportWriter report(flags.out, "bench", argv);
    for (auto& r : previous)
        if (!has_outcome(r, Outcome::failed)) report.add(r);
    report.flush();

    fmt::print("GPU: {} ({} SMs), {} states x {} implementations x {} phases -> {}\n", dev.name, dev.sms,
               plan.states.size(), plan.options.impls.size(), plan.options.phases.size(), flags.out);
    const bool tty = isatty(fileno(stdout));
    const auto t0 = std::chrono::steady_clock::now();
    int failures = 0, timed = 0;
    for (std::size_t i = 0; i < plan.states.size(); ++i) {
        const CheckCase& s = plan.states[i];
        BenchOptions options = plan.options;
        // --resume: skip implementations whose every phase of this state is already measured.
        std::vector<const Implementation*> impls;
        for (const Implementation* impl : options.impls) {
            bool all_done = !done.empty();
            for (Phase ph : options.phases) {
                const nlohmann::json probe = {{"config", config_json(s)},
                                              {"impl", impl->name},
                                              {"phase", to_string(ph)},
                                              {"gating", gating_label(*impl, ph, options.gating)}};
                all_done = all_done && done.count(state_key(probe));
            }
            if (!all_done) impls.push_back(impl);
        }
        if (impls.empty()) continue;
        options.impls = impls;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::string eta = i == 0 ? "?" : fmt_duration(elapsed / static_cast<double>(i) * static_cast<double>(plan.states.size() - i));
        const std::string head = fmt::format("[{}/{}] {:3.0f}% {}  ETA {}", i + 1, plan.states.size(),
                                             100.0 * static_cast<double>(i) / static_cast<double>(plan.states.size()),
                                             describe(s.problem), eta);
        if (tty) fmt::print("\r\033[K{}", head);
        else fmt::print("{}\n", head);
        std::fflush(stdout);
        // Each implementation's records on disk as it finishes; the state's final records (with
        // the speedups over every implementation of the state) replace them at its end.
        const std::size_t before_state = report.size();
        options.on_implementation_done = [&](const std::vector<nlohmann::json>& so_far) {
            report.replace_from(before_state, so_far);
            report.flush();
        };
        auto records = run_bench(s, options);
        report.replace_from(before_state, {});
        if (tty) fmt::print("\r\033[K{}\n", head);
        for (auto& r : records) {
            print_line(r);
            failures += has_outcome(r, Outcome::failed);
            timed += has_outcome(r, Outcome::passed);
            report.add(std::move(r));
        }
        report.flush();  // every finished state is on disk before the next one starts
    }
    report.finish();
    fmt::print("{} timed, {} failed; report: {}\n", timed, failures, flags.out);
    return failures > 0 ? 1 : 0;
}

}  // namespace moba::cli
