// `moba check`: flags and suites planned into cases, progress lines, the tables and the report.
#include "harness/cli/check_command.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include "harness/cli/parse.hpp"
#include "harness/device.hpp"
#include "harness/records.hpp"
#include "harness/report.hpp"
#include "harness/suite.hpp"

namespace moba::cli {

CLI::App* add_check_command(CLI::App& app, CheckFlags& f) {
    CLI::App* cmd = app.add_subcommand("check", "Check implementations against the float64 reference (SEMANTICS.md §5)");
    cmd->add_option("--seqlens", f.seqlens, "Sequence lengths of the packed batch, e.g. 4096,1000,17 or 8K");
    cmd->add_option("--heads", f.heads, "Query heads")->capture_default_str();
    cmd->add_option("--kv-heads", f.kv_heads, "KV heads (default: --heads, i.e. MHA)");
    cmd->add_option("--head-dim", f.head_dim, "Head dimension D")->capture_default_str();
    cmd->add_option("--block", f.block, "MoBA block size")->capture_default_str();
    cmd->add_option("--topk", f.topk, "Blocks per query, own block included")->capture_default_str();
    cmd->add_option("--dtype", f.dtype, "bf16, fp16 or fp32")->capture_default_str();
    cmd->add_option("--scale", f.scale, "Softmax scale (default 1/sqrt(D))");
    cmd->add_option("--impl", f.impl, "Comma list of implementations, or all")->capture_default_str();
    cmd->add_option("--seed", f.seed, "Seed of the random inputs (suites: seed of case 0)")->capture_default_str();
    cmd->add_option("--suite", f.suite, "Built-in matrix instead of one configuration: quick, long, paths (the top-k "
                    "paths and many-tile rows quick never takes) or decode");
    cmd->add_option("--shard", f.shard,
                    "With --suite: run only cases whose index % N == I, given as I/N (e.g. 0/3), so a "
                    "long suite fits several time-limited runs");
    cmd->add_option("--inputs", f.inputs,
                    "Input families, comma list or all (normal, dominant, sink, recency, peaked, "
                    "large_v, ties; SEMANTICS.md §8). One configuration: one case per family "
                    "(default normal). Suites: case i takes family i mod count (default: all seven; "
                    "harness/suite.hpp)");
    cmd->add_flag("--gating-only", f.gating_only,
                  "Only the gating check, against the float64 gating (fast enough for 1M tokens "
                  "at block 4096 or 512K at block 128); no attention truth");
    cmd->add_flag("--once", f.once,
                  "Call each implementation's gating, forward and backward once; by default each is "
                  "called a second time on the same workspace, on a held non-blocking stream, and judged "
                  "again (SEMANTICS.md §5)");
    cmd->add_option("--sanitize", f.sanitize,
                    "Instead of the numeric checks: run each case (at most 16K tokens) and "
                    "implementation under compute-sanitizer tools (memcheck, racecheck, synccheck, "
                    "initcheck or all); a hazard or error is an incorrect record");
    cmd->add_option("--reference", f.reference,
                    "Truth: cpu (float64 on the CPU) or gpu (float64 on the GPU, for lengths the CPU cannot "
                    "reach; SEMANTICS.md §3.1). Both judge the float64 gating's selection")
        ->capture_default_str();
    cmd->add_option("--q-lens", f.q_lens,
                    "Decode (SEMANTICS.md §9): new tokens of each request, one per --seqlens entry, which are "
                    "then the cache lengths (new tokens included); --suite decode runs the built-in decode cases");
    cmd->add_option("--page-size", f.page_size,
                    "Decode: keep the caches in pages of this many tokens, in shuffled order, with a block "
                    "table (vLLM/FlashInfer layout); 0 packs them")
        ->capture_default_str();
    cmd->add_option("--out", f.out, "JSON report path")->capture_default_str();
    for (CLI::Option* opt : cmd->get_options()) {
        const std::string name = opt->get_name();
        if (name.starts_with("--") && name != "--help") opt->each([&f, name](const std::string&) { f.given.insert(name); });
    }
    return cmd;
}

std::pair<int, int> parse_shard(std::string_view text) {
    const std::string bad = fmt::format("--shard '{}' is not I/N with 0 <= I < N", text);
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) throw std::invalid_argument(bad);
    auto number = [&](std::string_view digits) {
        if (digits.empty() || digits.size() > 6 ||
            !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            throw std::invalid_argument(bad);
        return std::stoi(std::string(digits));
    };
    const int index = number(text.substr(0, slash));
    const int count = number(text.substr(slash + 1));
    if (count < 1 || index >= count) throw std::invalid_argument(bad);
    return {index, count};
}

namespace {

// The shape flags of one configuration (not validated: the caller's validate names the value).
Problem problem_from_flags(const CheckFlags& f) {
    Problem p;
    p.seqlens = parse_lengths(f.seqlens, "--seqlens");
    p.heads_q = f.heads;
    p.heads_kv = f.kv_heads == 0 ? f.heads : f.kv_heads;
    p.head_dim = f.head_dim;
    p.block = f.block;
    p.topk = f.topk;
    p.dtype = parse_dtype(f.dtype);
    p.softmax_scale = f.scale;
    return p;
}

// --suite decode or one decode configuration (--seqlens, --q-lens, --page-size).
void plan_decode(const CheckFlags& f, CheckPlan& plan) {
    for (const char* flag : {"--gating-only", "--sanitize", "--reference"})
        if (f.given.count(flag))
            throw std::invalid_argument(fmt::format(
                "{} does not apply to decode checks (they judge against the float64 CPU truth, all checks at once); "
                "drop {}",
                flag, flag));
    if (f.page_size < 0) throw std::invalid_argument(fmt::format("--page-size {} must be 0 (packed) or positive", f.page_size));
    const std::vector<InputFamily> families =
        f.inputs.empty() ? (f.suite == "decode" ? suite_input_families() : std::vector<InputFamily>{InputFamily::normal})
                         : parse_input_families(f.inputs);
    if (f.suite == "decode") {
        for (const char* flag : {"--seqlens", "--q-lens", "--page-size", "--heads", "--kv-heads", "--head-dim",
                                 "--block", "--topk", "--dtype", "--scale"})
            if (f.given.count(flag))
                throw std::invalid_argument(fmt::format(
                    "{} does not apply with --suite decode: its cases set their own shapes (harness/decode_check.hpp)",
                    flag));
        std::vector<DecodeCase> all = decode_suite(f.seed, families);
        const auto [index, count] = f.shard.empty() ? std::pair{0, 1} : parse_shard(f.shard);
        for (std::size_t i = 0; i < all.size(); ++i)
            if (static_cast<int>(i % count) == index) plan.decode_cases.push_back(all[i]);
        plan.suite = true;
        return;
    }
    if (!f.suite.empty()) throw std::invalid_argument("--q-lens and --page-size describe one decode configuration; drop --suite " + f.suite);
    if (!f.shard.empty()) throw std::invalid_argument("--shard " + f.shard + " needs --suite");
    if (f.seqlens.empty() || f.q_lens.empty())
        throw std::invalid_argument("a decode configuration needs --seqlens (cache lengths) and --q-lens (new tokens)");
    DecodeCase c;
    c.base.problem = problem_from_flags(f);
    c.q_lens = parse_lengths(f.q_lens, "--q-lens");
    c.page_size = f.page_size;
    c.batch().validate();  // names the request whose q_len is bad, or the shape's bad value
    c.base.seed = f.seed;
    for (InputFamily family : families) {
        c.base.inputs = family;
        plan.decode_cases.push_back(c);
    }
}

}  // namespace

CheckPlan plan_check(const CheckFlags& f, bool gpu_present) {
    CheckPlan plan;
    if (f.reference == "cpu") {
        plan.options.reference = ReferenceKind::cpu;
    } else if (f.reference == "gpu") {
        plan.options.reference = ReferenceKind::gpu;
        if (!gpu_present) throw std::invalid_argument("--reference gpu needs a GPU, and none was found");
    } else if (f.reference == "naive") {
        throw std::invalid_argument(
            "--reference 'naive' is no longer a truth (it was the naive kernel's own fp32 result); "
            "use --reference gpu (float64 on the GPU) or cpu");
    } else {
        throw std::invalid_argument(fmt::format("--reference '{}' is not cpu or gpu", f.reference));
    }
    plan.options.gpu = gpu_present;
    plan.options.gating_only = f.gating_only;
    plan.options.call_twice = !f.once;
    if (!f.sanitize.empty()) {
        plan.sanitizers = parse_sanitizer_tools(f.sanitize);
        if (!gpu_present) throw std::invalid_argument("--sanitize needs a GPU, and none was found");
        if (f.gating_only) throw std::invalid_argument("--sanitize runs whole checks; drop --gating-only");
    }
    if (f.gating_only && plan.options.reference != ReferenceKind::cpu)
        throw std::invalid_argument("--gating-only judges against the float64 gating; it takes --reference cpu, not " +
                                    f.reference);
    for (const auto& name : parse_impl_list(f.impl)) plan.options.impls.push_back(find_implementation(name));
    const bool decode = f.suite == "decode" || f.given.count("--q-lens") || f.given.count("--page-size");
    // "all" means every entry that has what is checked: a prefill forward, or a decode step.
    if (f.impl == "all")
        std::erase_if(plan.options.impls, [decode](const Implementation* impl) {
            return decode ? !impl->has_decode() : !impl->has_forward();
        });
    if (decode) {
        plan_decode(f, plan);
        return plan;
    }

    if (!f.suite.empty()) {
        if (!f.seqlens.empty()) throw std::invalid_argument("give either --suite or --seqlens, not both");
        for (const char* flag : {"--heads", "--kv-heads", "--head-dim", "--block", "--topk", "--dtype", "--scale"})
            if (f.given.count(flag))
                throw std::invalid_argument(fmt::format(
                    "{} does not apply with --suite: the suite's cases set their own shapes (harness/suite.hpp); "
                    "drop {}, or give --seqlens for one configuration",
                    flag, flag));
        plan.cases = named_suite(f.suite, f.seed,
                                 f.inputs.empty() ? suite_input_families() : parse_input_families(f.inputs));
        if (!f.shard.empty()) {
            const auto [index, count] = parse_shard(f.shard);
            std::vector<CheckCase> kept;
            for (std::size_t i = 0; i < plan.cases.size(); ++i)
                if (static_cast<int>(i % count) == index) kept.push_back(plan.cases[i]);
            plan.cases = std::move(kept);  // cases keep their seeds: a shard's records match the whole run's
        }
        plan.options.add_zero_sparsity = false;  // the suites hold k >= n cases of every shape
        plan.suite = true;
        return plan;
    }
    if (!f.shard.empty()) throw std::invalid_argument("--shard " + f.shard + " needs --suite");
    if (f.seqlens.empty()) throw std::invalid_argument("give --seqlens (one configuration) or --suite quick");
    const Problem p = problem_from_flags(f);
    p.validate();
    for (InputFamily family : f.inputs.empty() ? std::vector<InputFamily>{InputFamily::normal}
                                               : parse_input_families(f.inputs))
        plan.cases.push_back({p, f.seed, family});
    return plan;
}

std::string plan_refusal(const CheckPlan& plan, std::int64_t host_available) {
    for (const DecodeCase& c : plan.decode_cases) {
        // make_inputs draws q, k, v and dout of the whole cache as float; the truth and the runs
        // hold far less beside them.
        const Problem& p = c.base.problem;
        const double bytes = 4.0 * (2.0 * static_cast<double>(p.q_elems()) + 2.0 * static_cast<double>(p.kv_elems()));
        if (host_available >= 0 && bytes > static_cast<double>(host_available))
            return fmt::format("the decode case {} draws its inputs as a prefill of the whole cache: about {:.1f} GiB "
                               "of host memory, but {:.1f} GiB are available (MemAvailable); use shorter caches or "
                               "fewer heads",
                               c.flags(), bytes / (1u << 30), static_cast<double>(host_available) / (1u << 30));
    }
    if (!plan.sanitizers.empty() || plan.cases.empty()) return {};
    if (plan.suite) {
        // A suite: a case over host memory would stop the run midway; the CPU truth's budget is
        // recorded per case (run_checks refuses it before drawing that case's inputs).
        for (const CheckCase& c : plan.cases)
            if (std::string why = host_memory_refusal(c, plan.options, host_available); !why.empty())
                return why;
        return {};
    }
    const CheckCase& c = plan.cases.front();  // one configuration (one case per input family)
    for (const std::string& why : {host_memory_refusal(c, plan.options, host_available),
                                   cpu_reference_refusal(c, plan.options), device_memory_refusal(c, plan.options)})
        if (!why.empty()) return why;
    return {};
}

namespace {

std::string describe(const CheckCase& c) {
    const Problem& p = c.problem;
    std::string lens;
    for (std::size_t i = 0; i < p.seqlens.size() && i < 4; ++i) lens += (i ? "," : "") + std::to_string(p.seqlens[i]);
    if (p.seqlens.size() > 4) lens += ",...";
    return fmt::format("{} {}x{} {} D{} L={} Bs={} k={} {}", head_layout(p.heads_q, p.heads_kv), p.heads_q,
                       p.heads_kv, to_string(p.dtype), p.head_dim, lens, p.block, p.topk,
                       to_string(c.inputs));
}

// "decode GQA 4x2 bf16 D128 cache=2048,777 q=7,64 Bs=64 k=3 paged/24 normal"
std::string describe(const DecodeCase& c) {
    const Problem& p = c.base.problem;
    auto list = [](const std::vector<int>& v) {
        std::string text;
        for (std::size_t i = 0; i < v.size() && i < 4; ++i) text += (i ? "," : "") + std::to_string(v[i]);
        return v.size() > 4 ? text + ",..." : text;
    };
    return fmt::format("decode {} {}x{} {} D{} cache={} q={} Bs={} k={}{} {}", head_layout(p.heads_q, p.heads_kv),
                       p.heads_q, p.heads_kv, to_string(p.dtype), p.head_dim, list(p.seqlens), list(c.q_lens),
                       p.block, p.topk, c.page_size > 0 ? fmt::format(" paged/{}", c.page_size) : "",
                       to_string(c.base.inputs));
}

double worst_ratio(const std::vector<nlohmann::json>& records) {
    double worst = 0;
    for (const auto& r : records)
        if (r.contains("ratio") && r["ratio"].is_number()) worst = std::max(worst, r["ratio"].get<double>());
    return worst;
}

std::string worst_outcome(const std::vector<nlohmann::json>& records) {
    std::string worst(to_string(Outcome::passed));
    for (const auto& r : records) {
        const auto o = parse_outcome(r["outcome"].get<std::string>());
        if (is_failure(o)) return std::string(to_string(o));
        if (o != Outcome::passed) worst = std::string(to_string(o));
    }
    return worst;
}

std::string fmt_err(const nlohmann::json& r, const char* key) {
    return r.contains(key) && r[key].is_number() ? fmt::format("{:.2e}", r[key].get<double>()) : "-";
}

void print_record_table(const nlohmann::json& records) {
    fmt::print("{:<14} {:<14} {:<10} {:>10} {:>10} {:>10} {:>7}  {}\n", "impl", "check", "tensor",
               "max_err", "bound", "rel_l2", "ratio", "outcome");
    for (const auto& r : records) {
        std::string extra;
        if (r["check"] == "gating")
            extra = fmt::format("  ({} pairs, {} near-ties, {} near-tie mismatches{})", r.value("pairs", 0),
                                r.value("near_ties", 0), r.value("near_tie_mismatches", 0),
                                r.value("block_means", "exact") == "rounded"
                                    ? fmt::format(", {} explained by rounded block means",
                                                  r.value("rounding_mismatches", 0))
                                    : "");
        // The bound column is max_err's; a record judged on another figure (bound_kind, e.g. the
        // baseline's "rel_l2 <= 4u") shows its bound beside that figure instead.
        const bool other_bound = r.contains("bound_kind") && r["bound_kind"].is_string();
        if (other_bound)
            extra += fmt::format("  (bound on {}: {})", r["bound_kind"].get<std::string>(), fmt_err(r, "bound"));
        fmt::print("{:<14} {:<14} {:<10} {:>10} {:>10} {:>10} {:>7}  {}{}\n", r["impl"].get<std::string>(),
                   r["check"].get<std::string>(), r["tensor"].get<std::string>(), fmt_err(r, "max_abs_err"),
                   other_bound ? std::string("-") : fmt_err(r, "bound"), fmt_err(r, "rel_l2_err"),
                   r.contains("ratio") && r["ratio"].is_number() ? fmt::format("{:.3f}", r["ratio"].get<double>()) : "-",
                   r["outcome"].get<std::string>(), extra);
    }
}

// Per (impl, check, tensor): how many records, how many failed, the worst ratio.
void print_summary_table(const nlohmann::json& records) {
    struct Row { int n = 0, bad = 0, other = 0; double worst = 0; std::int64_t near_ties = 0; };
    std::map<std::string, Row> rows;
    for (const auto& r : records) {
        Row& row = rows[fmt::format("{:<14} {:<14} {:<10}", r["impl"].get<std::string>(),
                                    r["check"].get<std::string>(), r["tensor"].get<std::string>())];
        ++row.n;
        const auto o = parse_outcome(r["outcome"].get<std::string>());
        row.bad += is_failure(o);
        row.other += (!is_failure(o) && o != Outcome::passed);
        if (r.contains("ratio") && r["ratio"].is_number()) row.worst = std::max(row.worst, r["ratio"].get<double>());
        row.near_ties += r.value("near_ties", std::int64_t{0});
    }
    fmt::print("\n{:<14} {:<14} {:<10} {:>6} {:>8} {:>8} {:>10}\n", "impl", "check", "tensor", "cases",
               "failing", "skipped", "worst");
    for (const auto& [key, row] : rows)
        fmt::print("{} {:>6} {:>8} {:>8} {:>10}\n", key, row.n, row.bad, row.other,
                   row.near_ties > 0 ? fmt::format("{} ties", row.near_ties) : fmt::format("{:.3f}", row.worst));
}

// The sanitizers slow a run 10-100x: only a suite's small shapes go through them.
constexpr std::int64_t kMaxSanitizeTokens = 16384;

std::vector<nlohmann::json> sanitizer_records(const CheckCase& c, const CheckPlan& plan) {
    std::vector<nlohmann::json> records;
    // The checked child's own report is scratch: only the sanitizer's verdict is kept.
    const std::string scratch =
        (std::filesystem::temp_directory_path() / fmt::format("moba-sanitize-{}.json", getpid())).string();
    const std::string sanitizer = find_compute_sanitizer();
    const std::string self = self_executable();
    for (const Implementation* impl : plan.options.impls) {
        for (SanitizerTool tool : plan.sanitizers) {
            CheckRecord r;
            r.config = c;
            r.impl = impl->name;
            r.check = "sanitizer";
            r.reference = plan.options.reference;
            r.sanitizer_figures = CheckRecord::Sanitizer{std::string(to_string(tool)), -1, 0, {}};
            std::vector<std::string> args;
            std::istringstream flags(c.problem.flags());
            for (std::string word; flags >> word;) args.push_back(word);
            args.insert(args.end(), {"--seed", std::to_string(c.seed), "--inputs",
                                     std::string(to_string(c.inputs)), "--impl", impl->name,
                                     "--out", scratch, "--once"});  // the tools judge memory: one call each
            if (c.problem.total_tokens() > kMaxSanitizeTokens) {
                r.outcome = Outcome::skipped;
                r.reason = fmt::format("{} tokens: more than the {} a sanitizer run takes",
                                       c.problem.total_tokens(), kMaxSanitizeTokens);
            } else if (sanitizer.empty() || self.empty()) {
                r.outcome = Outcome::failed;
                r.reason = sanitizer.empty() ? "compute-sanitizer not found (set MOBA_COMPUTE_SANITIZER)"
                                             : "cannot locate this program (/proc/self/exe)";
            } else {
                const SanitizerRun run = run_under_sanitizer(tool, sanitizer, self, args);
                r.command = run.command;
                r.outcome = run.outcome;
                r.reason = run.outcome == Outcome::passed ? "" : run.summary;
                r.sanitizer_figures->problems = run.problems;
                r.sanitizer_figures->exit_status = run.exit_status;
                r.sanitizer_figures->findings = run.findings;
            }
            if (r.command.empty()) r.command = reproduce_command(c, impl->name, r.reference) + " --sanitize " + std::string(to_string(tool));
            records.push_back(r);
        }
    }
    std::error_code ignored;
    std::filesystem::remove(scratch, ignored);
    return records;
}

// SIGINT/SIGTERM: the report on disk already holds every finished case with "complete": false
// (ReportWriter rewrites it after each); the handler says so and exits 128 + signal.
char g_interrupt_message[1024];
char g_partial_path[1024];

extern "C" void on_interrupt(int sig) {
    if (g_partial_path[0]) unlink(g_partial_path);  // a rewrite cut short, never the report
    const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    const ssize_t ignored_a = write(STDERR_FILENO, "\nmoba: interrupted (", 20);
    const ssize_t ignored_b = write(STDERR_FILENO, name, strlen(name));
    const ssize_t ignored_c = write(STDERR_FILENO, g_interrupt_message, strlen(g_interrupt_message));
    (void)ignored_a, (void)ignored_b, (void)ignored_c;
    _exit(128 + sig);
}

void handle_interrupts(const std::string& report_path) {
    const std::string message =
        report_path.empty() ? "); no report is written.\n"
                            : fmt::format("); the report {} holds the cases finished so far and is marked incomplete "
                                          "(\"complete\": false).\n",
                                          report_path);
    std::snprintf(g_interrupt_message, sizeof g_interrupt_message, "%s", message.c_str());
    std::snprintf(g_partial_path, sizeof g_partial_path, "%s",
                  report_path.empty() ? "" : (report_path + ".partial").c_str());
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

void default_interrupts() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
}

// Phase lines inside a case, on stderr: on a terminal one line rewritten in place, with the
// phase's number among the case's expected ones (expected_phases), the case's elapsed time and,
// from the second phase on, an ETA: the mean time of the phases done so far times the phases
// left (a truth costs more than an implementation's run, so it is a rough guide, marked "~");
// otherwise plain lines, for a single configuration every phase, for a suite
// only phases that start once a case has run kQuietSeconds (a long case, not 180 quick ones).
class PhaseProgress {
public:
    PhaseProgress(std::size_t cases) : cases_(cases), tty_(isatty(fileno(stderr))) {}

    void start_case(std::size_t index, std::string what, int expected_phases) {
        index_ = index;
        what_ = std::move(what);
        expected_ = expected_phases;
        step_ = 0;
        t_case_ = std::chrono::steady_clock::now();
    }
    void phase(const std::string& name) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_case_).count();
        ++step_;
        const int expected = std::max(expected_, step_);
        std::string eta;
        if (step_ > 1)
            eta = fmt::format(", ETA ~{:.0f}s", secs / (step_ - 1) * (expected - step_ + 1));
        const std::string line = fmt::format("[{}/{}] {}: {} (step {}/{}, case running {:.1f}s{})", index_ + 1,
                                             cases_, what_, name, step_, expected, secs, eta);
        if (tty_) {
            fmt::print(stderr, "\r\033[K{}", line);
            shown_ = true;
        } else if (cases_ == 1 || secs >= kQuietSeconds) {
            fmt::print(stderr, "{}\n", line);
        }
        std::fflush(stderr);
    }
    // Before the case's own line on stdout: clear the rewritten line.
    void end_case() {
        if (shown_) fmt::print(stderr, "\r\033[K");
        shown_ = false;
        std::fflush(stderr);
    }

private:
    static constexpr double kQuietSeconds = 10;
    std::size_t cases_, index_ = 0;
    int expected_ = 0, step_ = 0;
    bool tty_, shown_ = false;
    std::string what_;
    std::chrono::steady_clock::time_point t_case_;
};

}  // namespace

int run_check(const CheckFlags& flags, const std::vector<std::string>& argv) {
    const DeviceInfo& dev = device_info();
    CheckPlan plan = plan_check(flags, dev.present);
    // Refused before any input is drawn or any report written (exit 2).
    if (const std::string why = plan_refusal(plan, host_memory_available()); !why.empty())
        throw std::invalid_argument(why + " (nothing was run; no report written)");
    if (plan.suite && plan.sanitizers.empty() && plan.decode_cases.empty()) {
        int over = 0;
        for (const CheckCase& c : plan.cases) over += !cpu_reference_refusal(c, plan.options).empty();
        if (over > 0)
            fmt::print(stderr,
                       "moba check: {} of {} cases exceed the float64 CPU reference's budget ({:.1e} pair x D); "
                       "each is recorded as failed without drawing its inputs. Use --reference gpu to check them.\n",
                       over, plan.cases.size(), kMaxCpuReferenceWork);
    }
    // One entry per case, prefill or decode: what the progress lines call it, its phases, its run.
    struct PlannedCase {
        std::string what;
        int phases;
        std::function<std::vector<nlohmann::json>()> run;
    };
    std::vector<PlannedCase> cases;
    for (const CheckCase& c : plan.cases)
        cases.push_back({describe(c), expected_phases(c, plan.options), [&plan, &c] {
                             return plan.sanitizers.empty() ? run_checks(c, plan.options) : sanitizer_records(c, plan);
                         }});
    for (const DecodeCase& c : plan.decode_cases)
        cases.push_back({describe(c), expected_decode_phases(c, plan.options),
                         [&plan, &c] { return run_decode_checks(c, plan.options); }});
    PhaseProgress progress(cases.size());
    plan.options.progress = [&progress](const std::string& phase) { progress.phase(phase); };
    if (dev.present)
        fmt::print("GPU: {} ({} SMs, {:.0f} GiB)\n", dev.name, dev.sms,
                   static_cast<double>(dev.memory_bytes) / (1u << 30));
    else
        fmt::print("No GPU found ({}).\nChecking the same-precision CPU baseline against the float64 "
                   "reference only; GPU implementations are not run.\n", dev.reason);

    if (dev.present)
        for (const Implementation* impl : plan.options.impls) fmt::print("  {:<14} {}\n", impl->name, impl->technique);
    ReportWriter report(flags.out, "check", argv);
    handle_interrupts(flags.out);
    const bool tty = isatty(fileno(stdout));
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const PlannedCase& c = cases[i];
        const auto t_case = std::chrono::steady_clock::now();
        progress.start_case(i, c.what, c.phases);
        auto records = c.run();
        progress.end_case();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_case).count();
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double eta = elapsed / static_cast<double>(i + 1) * static_cast<double>(cases.size() - i - 1);
        fmt::print("[{:>3}/{}] {:<44} worst ratio {:.3f}  {:<13} {:5.1f}s  ETA {:.0f}s\n", i + 1,
                   cases.size(), c.what, worst_ratio(records), worst_outcome(records), secs, eta);
        if (tty) std::fflush(stdout);
        for (auto& r : records) report.add(std::move(r));
        report.flush();
    }
    report.finish();
    default_interrupts();

    const auto& records = report.document()["records"];
    if (cases.size() == 1) {
        fmt::print("\n");
        print_record_table(records);
    } else {
        print_summary_table(records);
    }
    int failing = 0;
    for (const auto& r : records)
        if (is_failure(parse_outcome(r["outcome"].get<std::string>()))) {
            if (failing++ < 20)
                fmt::print("FAIL {} {} {} {}: {}\n    reproduce: {}\n", r["impl"].get<std::string>(),
                           r["check"].get<std::string>(), r["tensor"].get<std::string>(),
                           r["outcome"].get<std::string>(), r["reason"].get<std::string>(),
                           r["command"].get<std::string>());
        }
    const auto& s = report.document()["summary"];
    auto count = [&](Outcome o) { return s[std::string(to_string(o))].get<int>(); };
    fmt::print("\n{} records: {} passed, {} incorrect, {} failed, {} not supported, {} skipped\nreport: {}\n",
               s["records"].get<int>(), count(Outcome::passed), count(Outcome::incorrect), count(Outcome::failed),
               count(Outcome::not_supported), count(Outcome::skipped), flags.out);
    return failing > 0 ? 1 : 0;
}

}  // namespace moba::cli
