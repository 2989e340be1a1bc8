// `moba bench`: device inputs, the checks on sampled rows (gating, forward, backward), the timed runs and the
// bench records they fill.
#include "harness/bench.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/compare.hpp"
#include "core/cuda_check.hpp"
#include "harness/device.hpp"
#include "harness/device_equal.hpp"
#include "harness/key_sampling.hpp"
#include "harness/device_random.hpp"
#include "harness/gpu_run.hpp"
#include "harness/report.hpp"  // kernel_env_prefix
#include "reference/reference.hpp"

namespace moba {

std::string_view to_string(GatingMode mode) { return mode == GatingMode::included ? "included" : "separate"; }

GatingMode parse_gating_mode(std::string_view text) {
    if (text == "included") return GatingMode::included;
    if (text == "separate") return GatingMode::separate;
    throw std::invalid_argument("unknown --gating '" + std::string(text) + "' (expected included or separate)");
}

std::string gating_label(const Implementation& impl, Phase phase, GatingMode gating) {
    return impl.has_gating() && phase != Phase::bwd ? std::string(to_string(gating)) : std::string("none");
}

std::string bench_command(const CheckCase& s, const std::string& impl, Phase phase, GatingMode gating, bool cold,
                          double warmup_seconds) {
    const CommandNaming naming = command_naming(impl);
    return kernel_env_prefix() +
           fmt::format("{} bench {} --seed {} {} --phase {} --gating {}{}{}", naming.tool, s.problem.flags(), s.seed,
                       naming.impl_flags, to_string(phase), to_string(gating), cold ? " --cold" : "",
                       warmup_seconds > 0 ? fmt::format(" --warmup-seconds {}", warmup_seconds) : "");
}

namespace {

using nlohmann::json;

std::size_t elems_bytes(const Problem& p, std::int64_t n) { return static_cast<std::size_t>(n) * dtype_bytes(p.dtype); }

// How far free device memory fell below `free_before` (0 when it rose). The driver maps memory in
// 2 MiB pages, so a gigabyte-sized run is measured to within a few pages; a run of a few small
// buffers may be served from pages already mapped and show less than it holds.
std::size_t free_drop(std::size_t free_before) {
    const std::size_t free_now = device_memory().free_bytes;
    return free_before > free_now ? free_before - free_now : 0;
}

// Why a memory measurement cannot be the run's alone, or "" when nothing says so. Free memory is
// device-wide: another process allocating or freeing during the run moves it (two of ctest's
// parallel GPU tests did, by hundreds of MiB). Two signs, each past a 64 MiB slack (small buffers
// may be served from pages already mapped): the measurement fell short of what the harness
// allocated, or free memory moved between the end of the checks (everything the implementation
// keeps is held by then) and the end of a timed loop. A disturbance that lasts the whole run is
// not seen; run memory measurements alone on the GPU (SEMANTICS.md §6).
std::string memory_disturbance(std::size_t measured, std::size_t allocated, std::size_t checked_drop,
                               std::size_t timed_drop) {
    constexpr double kSlack = 64.0 * (1 << 20), kMiB = 1 << 20;
    const double shortfall = static_cast<double>(allocated) - static_cast<double>(measured);
    if (shortfall > kSlack)
        return fmt::format("measured {:.0f} MiB less than the harness allocated: another process freed device "
                           "memory during the run",
                           shortfall / kMiB);
    const double moved = static_cast<double>(timed_drop) - static_cast<double>(checked_drop);
    if (std::abs(moved) > kSlack)
        return fmt::format("free device memory {} by {:.0f} MiB during the timed loop, after the checks had run "
                           "everything once: another process, or memory the implementation {} while timed",
                           moved > 0 ? "fell" : "rose", std::abs(moved) / kMiB, moved > 0 ? "took" : "gave back");
    return "";
}

// Inputs of one state, drawn on the device (tensor streams 0..3 = q, k, v, dout).
struct DeviceState {
    Problem p;
    DeviceBuffer cu, q, k, v, dout;
    std::size_t allocated_bytes = 0;  // the five buffers' sizes
    std::size_t measured_bytes = 0;   // the drop in free device memory their allocation caused
    DeviceState(const Problem& problem, std::uint64_t seed) : p(problem) {
        require_device_memory(2 * elems_bytes(p, p.q_elems()) + 2 * elems_bytes(p, p.kv_elems()),
                              fmt::format("the inputs of {}", p.flags()));
        const std::size_t free_before = device_memory().free_bytes;
        const auto cu_host = p.cu_seqlens();
        cu = DeviceBuffer(cu_host.size() * 4);
        cu.upload(cu_host.data(), cu_host.size() * 4);
        q = DeviceBuffer(elems_bytes(p, p.q_elems()));
        k = DeviceBuffer(elems_bytes(p, p.kv_elems()));
        v = DeviceBuffer(elems_bytes(p, p.kv_elems()));
        dout = DeviceBuffer(elems_bytes(p, p.q_elems()));
        fill_normal_device(p.dtype, q.get(), p.q_elems(), seed, 0, nullptr);
        fill_normal_device(p.dtype, k.get(), p.kv_elems(), seed, 1, nullptr);
        fill_normal_device(p.dtype, v.get(), p.kv_elems(), seed, 2, nullptr);
        fill_normal_device(p.dtype, dout.get(), p.q_elems(), seed, 3, nullptr);
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
        allocated_bytes = cu_host.size() * 4 + 2 * elems_bytes(p, p.q_elems()) + 2 * elems_bytes(p, p.kv_elems());
        measured_bytes = free_drop(free_before);
    }
};

std::vector<float> download_floats(const Problem& p, const void* src, std::int64_t first, std::int64_t count) {
    std::vector<unsigned char> bytes(elems_bytes(p, count));
    MOBA_CUDA_CALL(cudaMemcpy(bytes.data(), static_cast<const char*>(src) + elems_bytes(p, first), bytes.size(),
                              cudaMemcpyDeviceToHost));
    return decode(p.dtype, bytes);
}

// Sampled query tokens: the last token of every sequence and random others, few enough that
// the float64 rows stay cheap (about 2e10 multiply-adds at most).
std::vector<std::int64_t> sample_tokens(const Problem& p, std::uint64_t seed, int wanted, bool dense) {
    const double keys = dense ? p.max_seqlen() : std::min<double>(p.max_seqlen(), static_cast<double>(p.topk) * p.block);
    const double per_row = keys * p.heads_q * p.head_dim;
    const int rows = static_cast<int>(std::clamp(2e10 / std::max(per_row, 1.0), 4.0, static_cast<double>(wanted)));
    const auto cu = p.cu_seqlens();
    std::vector<std::int64_t> tokens;
    for (int b = 0; b < p.batch() && static_cast<int>(tokens.size()) < rows; ++b) tokens.push_back(cu[b + 1] - 1);
    std::mt19937_64 rng(seed ^ 0x5eedULL);
    std::uniform_int_distribution<std::int64_t> pick(0, p.total_tokens() - 1);
    while (static_cast<int>(tokens.size()) < std::min<std::int64_t>(rows, p.total_tokens())) {
        const std::int64_t t = pick(rng);
        if (std::find(tokens.begin(), tokens.end(), t) == tokens.end()) tokens.push_back(t);
    }
    std::sort(tokens.begin(), tokens.end());
    return tokens;
}

// Rows `tokens` (ascending or not) of a device tensor [total, width] in the problem's dtype, as
// floats [T, width]; runs of consecutive tokens are copied in one call.
std::vector<float> gather_rows(const Problem& p, const void* src, const std::vector<std::int64_t>& tokens,
                               std::int64_t width) {
    std::vector<float> rows;
    rows.reserve(tokens.size() * static_cast<std::size_t>(width));
    for (std::size_t i = 0; i < tokens.size();) {
        std::size_t j = i + 1;
        while (j < tokens.size() && tokens[j] == tokens[j - 1] + 1) ++j;
        const auto r = download_floats(p, src, tokens[i] * width, static_cast<std::int64_t>(j - i) * width);
        rows.insert(rows.end(), r.begin(), r.end());
        i = j;
    }
    return rows;
}

// What the checks need on the host: full k, v and the sampled rows of q and dout.
struct HostRows {
    std::shared_ptr<const std::vector<float>> k, v;  // shared between the MoBA and dense rows
    std::vector<std::int64_t> tokens;
    std::vector<float> q_rows, dout_rows;
};

HostRows host_rows(const DeviceState& d, const std::vector<std::int64_t>& tokens, const HostRows* share_kv) {
    const Problem& p = d.p;
    HostRows h;
    if (share_kv) {
        h.k = share_kv->k;
        h.v = share_kv->v;
    } else {
        h.k = std::make_shared<const std::vector<float>>(download_floats(p, d.k.get(), 0, p.kv_elems()));
        h.v = std::make_shared<const std::vector<float>>(download_floats(p, d.v.get(), 0, p.kv_elems()));
    }
    h.tokens = tokens;
    const std::int64_t row = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    h.q_rows = gather_rows(p, d.q.get(), tokens, row);
    h.dout_rows = gather_rows(p, d.dout.get(), tokens, row);
    return h;
}

// The reference's row inputs of those rows with the given selection rows (none: full causal).
ref::RowInputs row_inputs(const HostRows& h, const Selection* sel_rows) {
    ref::RowInputs in;
    in.tokens = h.tokens;
    in.q_rows = h.q_rows;
    in.k = h.k.get();
    in.v = h.v.get();
    if (sel_rows) in.sel_rows = *sel_rows;
    return in;
}

// Forward check on the sampled rows: out and lse against float64, bounds from the baseline.
struct RowCheck {
    Outcome outcome = Outcome::passed;
    std::string reason;
    double worst_ratio = 0;
};

// The float64 truth and the baseline of the sampled rows, computed once: the rows are judged
// before timing and again, on the last timed call's output, after it.
struct RowTruth {
    ref::Forward truth;
    ForwardOutput base;
};

RowTruth row_truth(const Problem& p, const HostRows& h, const Selection* sel_rows) {
    const ref::RowInputs in = row_inputs(h, sel_rows);
    return {ref::forward_rows(p, in), ref::baseline_forward_rows(p, in)};
}

// lse_dev null: the implementation writes no lse (Implementation::writes_lse); out alone is judged.
RowCheck check_rows(const Problem& p, const HostRows& h, const RowTruth& t, const void* out, const float* lse_dev) {
    const ref::Forward& truth = t.truth;
    const ForwardOutput& base = t.base;
    const std::int64_t row = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    const auto n = static_cast<std::int64_t>(h.tokens.size());
    const std::vector<float> got_out = gather_rows(p, out, h.tokens, row);
    std::vector<float> got_lse(static_cast<std::size_t>(n * p.heads_q));
    for (int hd = 0; lse_dev && hd < p.heads_q; ++hd)
        for (std::int64_t i = 0; i < n; ++i)
            MOBA_CUDA_CALL(cudaMemcpy(&got_lse[static_cast<std::size_t>(hd * n + i)],
                                      lse_dev + static_cast<std::int64_t>(hd) * p.total_tokens() + h.tokens[static_cast<std::size_t>(i)],
                                      4, cudaMemcpyDeviceToHost));
    RowCheck rc;
    std::vector<TensorCheck> checks{compare_tensor("out", got_out, truth.out, base.out, kForwardFactor, tensor_atol(p.dtype))};
    if (lse_dev) checks.push_back(compare_tensor("lse", got_lse, truth.lse, base.lse, kForwardFactor, kLseAtol));
    for (const TensorCheck& c : checks) {
        rc.worst_ratio = std::max(rc.worst_ratio, c.ratio);
        if (c.outcome != Outcome::passed && rc.outcome == Outcome::passed) {
            rc.outcome = c.outcome;
            rc.reason = fmt::format("forward check on {} sampled rows, {}: {}", n, c.tensor, c.reason);
        }
    }
    return rc;
}

// Work budget of the dk / dv check (SEMANTICS.md §5.3): the attended keys, times D, of every
// (query, head) pair whose forward the sampled keys need. Each unit costs about 8 ns of one CPU
// core (float64 and baseline passes: 160 CPU-s for 1.9e10 at 32K, 16 / 4 heads, D 128, block 512,
// top-k 8), so the budget is about 80 CPU-s, a few seconds on a GPU host's cores, once per
// distinct selection of a state (backward_truth is shared).
constexpr double kKeyCheckWork = 1e10;
constexpr int kKeyBlocks = 4;        // key blocks sampled at most
constexpr int kKeysPerBlock = 4;     // keys per block: its first, its last and random others

// The float64 and baseline rows of a backward check for one selection: implementations that run
// with the same selection (the dense ones; MoBA ones whose gating agrees) share them.
struct BackwardTruth {
    bool full_causal = false;
    Selection sel;       // the full selection (host), empty for full causal
    Selection sel_rows;  // its rows of the sampled query tokens
    std::vector<double> dq;
    std::vector<float> dq_base;
    KeySample keys;
    ref::KeyGradients k;
    ref::BaselineKeyGradients k_base;
};

BackwardTruth backward_truth(const Problem& p, std::uint64_t seed, const HostRows& h, const Selection* sel_rows,
                             const Selection* sel, const DeviceState& d) {
    const std::int64_t q_width = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    BackwardTruth t;
    t.full_causal = sel == nullptr;
    if (sel) t.sel = *sel;
    if (sel_rows) t.sel_rows = *sel_rows;
    const ref::BackwardRowInputs q_in{row_inputs(h, sel_rows), h.dout_rows};
    t.dq = ref::backward_query_rows(p, q_in);
    t.dq_base = ref::baseline_backward_query_rows(p, q_in);
    t.keys = sample_keys(p, sel, kKeyCheckWork, kKeyBlocks, kKeysPerBlock, seed);
    if (t.keys.keys.empty()) return t;
    const std::vector<std::int64_t>& queries = t.keys.query_tokens;
    ref::BackwardRowInputs k_in;
    k_in.rows.tokens = queries;
    k_in.rows.q_rows = gather_rows(p, d.q.get(), queries, q_width);
    k_in.rows.k = h.k.get();
    k_in.rows.v = h.v.get();
    if (sel) {
        k_in.rows.sel_rows.slots = sel->slots;
        const std::int64_t w = static_cast<std::int64_t>(p.heads_q) * sel->slots;
        for (std::int64_t q : queries)
            k_in.rows.sel_rows.blocks.insert(k_in.rows.sel_rows.blocks.end(), sel->blocks.begin() + q * w,
                                             sel->blocks.begin() + (q + 1) * w);
    }
    k_in.dout_rows = gather_rows(p, d.dout.get(), queries, q_width);
    t.k = ref::backward_key_rows(p, k_in, t.keys.keys);
    t.k_base = ref::baseline_backward_key_rows(p, k_in, t.keys.keys);
    return t;
}

// Backward check: dq of the sampled query rows, dk and dv of sampled key rows, each against
// float64 with bounds from the baseline on the same rows (SEMANTICS.md §5.3). The implementation's
// backward has run: dq, dk, dv are its outputs. `sel`: the full selection it ran with (host), or
// null for full causal attention; `cache` holds the truth of the selections seen in this state.
BackwardCheckFigures check_backward(const Problem& p, std::uint64_t seed, const HostRows& h, const Selection* sel_rows,
                                    const Selection* sel, const DeviceState& d, const void* dq, const void* dk,
                                    const void* dv, std::vector<BackwardTruth>& cache, std::string& reason) {
    auto same = [&](const BackwardTruth& t) {
        return t.full_causal == (sel == nullptr) && (!sel || t.sel.blocks == sel->blocks) &&
               (!sel_rows || t.sel_rows.blocks == sel_rows->blocks);
    };
    auto hit = std::find_if(cache.begin(), cache.end(), same);
    if (hit == cache.end()) {
        if (sel) std::erase_if(cache, [](const BackwardTruth& t) { return !t.full_causal; });  // one MoBA selection kept
        cache.push_back(backward_truth(p, seed, h, sel_rows, sel, d));
        hit = cache.end() - 1;
    }
    const BackwardTruth& t = *hit;
    const KeySample& ks = t.keys;
    BackwardCheckFigures f;
    f.work_budget = kKeyCheckWork;
    f.query_rows = static_cast<std::int64_t>(h.tokens.size());
    f.key_rows = static_cast<std::int64_t>(ks.keys.size());
    f.attending_rows = static_cast<std::int64_t>(ks.query_tokens.size());
    f.key_blocks = ks.blocks;
    f.blocks_total = ks.blocks_total;
    f.blocks_over_budget = ks.blocks_over_budget;
    f.most_attended = ks.most_attended;
    f.most_attended_checked = ks.most_attended_checked;
    f.block_tails = ks.block_tails;
    f.last_tokens_only = ks.last_tokens_only;
    const double atol = tensor_atol(p.dtype);
    auto judge = [&](const TensorCheck& c, const std::string& rows) {
        f.worst_ratio = std::max(f.worst_ratio, c.ratio);
        if (c.outcome != Outcome::passed && f.outcome == Outcome::passed) {
            f.outcome = c.outcome;
            reason = fmt::format("backward check on {}, {}: {}", rows, c.tensor, c.reason);
        }
    };
    const std::int64_t q_width = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    const std::int64_t kv_width = static_cast<std::int64_t>(p.heads_kv) * p.head_dim;
    judge(compare_tensor("dq", gather_rows(p, dq, h.tokens, q_width), t.dq, t.dq_base, kGradientFactor, atol),
          fmt::format("{} sampled query rows", f.query_rows));
    if (ks.keys.empty()) return f;
    const std::string rows = fmt::format("{} sampled key rows ({} attending query rows)", f.key_rows, f.attending_rows);
    judge(compare_tensor("dk", gather_rows(p, dk, ks.keys, kv_width), t.k.dk, t.k_base.dk, kGradientFactor, atol), rows);
    judge(compare_tensor("dv", gather_rows(p, dv, ks.keys, kv_width), t.k.dv, t.k_base.dv, kGradientFactor, atol), rows);
    return f;
}

Selection selection_rows(const Problem& p, const DeviceBuffer& sel, const std::vector<std::int64_t>& tokens) {
    Selection s;
    s.slots = p.sel_slots();
    const std::int64_t row = static_cast<std::int64_t>(p.heads_q) * s.slots;
    s.blocks.resize(static_cast<std::size_t>(row) * tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i)
        MOBA_CUDA_CALL(cudaMemcpy(s.blocks.data() + static_cast<std::int64_t>(i) * row,
                                  sel.as<std::int32_t>() + tokens[i] * row, static_cast<std::size_t>(row) * 4,
                                  cudaMemcpyDeviceToHost));
    return s;
}

Selection download_selection(const Problem& p, const DeviceBuffer& sel) {
    Selection s;
    s.slots = p.sel_slots();
    s.blocks.resize(static_cast<std::size_t>(p.sel_elems()));
    sel.download(s.blocks.data(), s.blocks.size() * 4);
    return s;
}

}  // namespace

BenchRecord bench_record_skeleton(const CheckCase& s, const Implementation& impl, Phase phase, GatingMode gating,
                                  bool cold, double warmup_seconds) {
    const Problem& p = s.problem;
    BenchRecord r;
    r.config = s;
    r.impl = impl.name;
    r.dense = impl.dense;
    r.phase = phase;
    r.gating = gating_label(impl, phase, gating);
    r.pairs = impl.dense ? dense_pairs(p) : moba_pairs(p);
    r.dense_pairs = dense_pairs(p);
    r.flops = attention_flops(p, r.pairs, phase);
    r.gating_flops = impl.has_gating() ? gating_flops(p) : 0.0;
    r.command = bench_command(s, impl.name, phase, gating, cold, warmup_seconds);
    return r;  // outcome and check_outcome: skipped
}

namespace {

// Buffers of one implementation's runs; sel_checked: the copy of its own selection that was
// checked, compared with sel after timing.
struct RunBuffers {
    DeviceBuffer out, lse, dq, dk, dv, sel, sel_checked, workspace, gating_workspace;
};

// What the state shares between implementations: the sampled rows, the float64 gating of the
// MoBA rows (for implementations with gating) and the naive GPU selection (for MoBA
// implementations without gating; none is registered today).
struct StateChecks {
    const DeviceBuffer* sel_ref = nullptr;
    const HostRows* rows_moba = nullptr;
    const HostRows* rows_dense = nullptr;
    const ref::GatingResult* gating_truth = nullptr;
    std::vector<BackwardTruth>* backward_truths = nullptr;  // filled as implementations are checked
};

void bench_impl(const CheckCase& s, const Implementation& impl, const BenchOptions& o, const DeviceState& d,
                const StateChecks& sc, std::vector<BenchRecord>& records) {
    const Problem& p = s.problem;
    // Figures every record of the implementation carries, whatever its outcome.
    std::string check_selection;
    std::int64_t sampled_rows = 0;
    std::optional<GatingCheck> gating_check;
    std::optional<BackwardCheckFigures> backward_check;
    auto skeleton = [&](Phase phase) {
        BenchRecord r = bench_record_skeleton(s, impl, phase, o.gating, o.timing.cold, o.timing.warmup_seconds);
        r.check_selection = check_selection;
        r.check_rows = sampled_rows;
        r.gating_check = gating_check;
        if (phase != Phase::fwd) r.backward_check = backward_check;
        return r;
    };
    const std::size_t first_record = records.size();
    // Every phase not recorded yet (a failure after some phases were timed keeps those).
    auto fail_all = [&](Outcome outcome, const std::string& reason, Outcome check_outcome) {
        for (Phase phase : o.phases) {
            if (std::any_of(records.begin() + static_cast<std::ptrdiff_t>(first_record), records.end(),
                            [&](const BenchRecord& done) { return done.phase == phase; }))
                continue;
            BenchRecord r = skeleton(phase);
            r.outcome = outcome;
            r.reason = reason;
            r.check_outcome = check_outcome;
            records.push_back(std::move(r));
        }
    };
    const Support support = impl.has_forward() ? impl.supports(p) : Support::no(decode_only_reason(impl));
    if (!support.ok) return fail_all(Outcome::not_supported, support.reason, Outcome::not_supported);
    const bool need_bwd = std::any_of(o.phases.begin(), o.phases.end(), [](Phase ph) { return ph != Phase::fwd; });
    if (need_bwd && !impl.has_backward()) return fail_all(Outcome::not_supported, impl.name + " has no backward", Outcome::skipped);
    try {
        const bool own = impl.has_gating();
        const std::size_t ws = impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0;
        const std::size_t gws = impl.gating_workspace_bytes ? impl.gating_workspace_bytes(p) : 0;
        const std::size_t q_bytes = elems_bytes(p, p.q_elems()), kv_bytes = elems_bytes(p, p.kv_elems());
        const std::size_t sel_bytes = own ? static_cast<std::size_t>(p.sel_elems()) * 4 : 0;
        // What this run allocates beside the shared inputs; one copy of the selection (sel_checked,
        // the determinism check's) is the harness's own, not the implementation's.
        const std::size_t allocated = q_bytes + 4 * static_cast<std::size_t>(p.lse_elems()) + ws + gws +
                                      2 * sel_bytes + (need_bwd ? q_bytes + 2 * kv_bytes : 0);
        require_device_memory(allocated, fmt::format("{} on {}", impl.name, p.flags()));
        // Device memory is measured from here to the end of the timed loop: the run's buffers and
        // whatever the implementation or its libraries keep (a cuBLAS workspace, PyTorch's cache;
        // bench_records releases an external entry's cache before and after its run).
        const std::size_t free_before_run = device_memory().free_bytes;
        RunBuffers b;
        b.out = DeviceBuffer(q_bytes);
        b.lse = DeviceBuffer(4 * static_cast<std::size_t>(p.lse_elems()));
        b.workspace = DeviceBuffer(ws);
        b.gating_workspace = DeviceBuffer(gws);
        b.sel = DeviceBuffer(sel_bytes);
        b.sel_checked = DeviceBuffer(sel_bytes);
        if (need_bwd) {
            b.dq = DeviceBuffer(q_bytes);
            b.dk = DeviceBuffer(kv_bytes);
            b.dv = DeviceBuffer(kv_bytes);
        }
        GatingArgs g{p, d.cu.as<std::int32_t>(), d.q.get(), d.k.get(), b.sel.as<std::int32_t>(),
                     b.gating_workspace.get(), nullptr};
        const HostRows& rows = impl.dense ? *sc.rows_dense : *sc.rows_moba;
        sampled_rows = static_cast<std::int64_t>(rows.tokens.size());

        // The selection that is checked and then timed: the implementation's own gating, judged
        // on the sampled rows against float64 gating (SEMANTICS.md §5.2).
        const DeviceBuffer* sel = nullptr;
        std::optional<Selection> sel_rows;
        if (own) {
            check_selection = "own";
            b.sel.poison();
            impl.gating(g);
            MOBA_CUDA_CALL(cudaDeviceSynchronize());
            sel_rows = selection_rows(p, b.sel, rows.tokens);
            gating_check = compare_gating_rows(p, *sel_rows, *sc.gating_truth, row_inputs(rows, nullptr),
                                               impl.block_means == BlockMeans::rounded);
            if (gating_check->outcome != Outcome::passed)
                return fail_all(Outcome::skipped,
                                fmt::format("not timed: gating check on {} sampled rows: {}", sampled_rows,
                                            gating_check->reason),
                                gating_check->outcome);
            MOBA_CUDA_CALL(cudaMemcpy(b.sel_checked.get(), b.sel.get(), sel_bytes, cudaMemcpyDeviceToDevice));
            sel = &b.sel;
        } else if (!impl.dense) {
            check_selection = "naive_gpu";
            sel = sc.sel_ref;
            sel_rows = selection_rows(p, *sel, rows.tokens);
        } else {
            check_selection = "full_causal";
        }
        AttentionArgs a = forward_args(p, d.cu, d.q, d.k, d.v, sel ? sel->as<std::int32_t>() : nullptr, b.out, b.lse,
                                       b.workspace);
        a.dout = d.dout.get();
        a.dq = b.dq.get();
        a.dk = b.dk.get();
        a.dv = b.dv.get();

        // Correct first: the forward with that selection, checked on the sampled rows against
        // float64 rows computed for that same selection.
        b.out.poison();
        b.lse.poison();
        impl.forward(a);
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
        const RowTruth rows_truth = row_truth(p, rows, sel_rows ? &*sel_rows : nullptr);
        const RowCheck rc = check_rows(p, rows, rows_truth, b.out.get(), impl.writes_lse ? b.lse.as<float>() : nullptr);
        if (rc.outcome != Outcome::passed) return fail_all(Outcome::skipped, "not timed: " + rc.reason, rc.outcome);

        // Then the backward, before any phase that runs it is timed.
        std::string bwd_reason;
        std::optional<Selection> host_sel;  // the full selection on the host (MoBA), for the dk/dv rows
        if (need_bwd) {
            b.dq.poison();
            b.dk.poison();
            b.dv.poison();
            impl.backward(a);
            MOBA_CUDA_CALL(cudaDeviceSynchronize());
            if (sel) host_sel = download_selection(p, *sel);
            backward_check = check_backward(p, s.seed, rows, sel_rows ? &*sel_rows : nullptr,
                                            host_sel ? &*host_sel : nullptr, d, b.dq.get(), b.dk.get(), b.dv.get(),
                                            *sc.backward_truths, bwd_reason);
        }

        // The implementation has run (gating, forward, backward): what it keeps is held from here
        // on, so free memory should not move again during the timed loops (see memory_disturbance).
        const std::size_t checked_drop = free_drop(free_before_run);

        for (Phase phase : o.phases) {
            BenchRecord r = skeleton(phase);
            if (phase != Phase::fwd && backward_check->outcome != Outcome::passed) {
                r.outcome = Outcome::skipped;
                r.check_outcome = backward_check->outcome;
                r.reason = "not timed: " + bwd_reason;
                records.push_back(std::move(r));
                continue;
            }
            BenchMeasurement m;
            m.check_worst_ratio = rc.worst_ratio;
            const bool gate_in = own && o.gating == GatingMode::included && phase != Phase::bwd;
            AttentionArgs timed = a;  // the checked selection; with gate_in the gating rewrites it first
            auto body = [&](cudaStream_t stream) {
                timed.stream = stream;
                if (gate_in) {
                    GatingArgs gg = g;
                    gg.stream = stream;
                    impl.gating(gg);
                }
                if (phase != Phase::bwd) impl.forward(timed);
                if (phase != Phase::fwd) impl.backward(timed);
            };
            m.timing = measure(body, nullptr, o.timing);
            if (own && o.gating == GatingMode::separate && phase != Phase::bwd) {
                auto gate_body = [&](cudaStream_t stream) {
                    GatingArgs gg = g;
                    gg.stream = stream;
                    impl.gating(gg);
                };
                m.gating_ms = measure(gate_body, nullptr, o.timing).median_ms;
            }
            // Measured: the inputs' pages plus the drop in free memory since before the run's
            // buffers, less the harness's copy of the selection (SEMANTICS.md §6).
            const std::size_t run_drop = free_drop(free_before_run);
            m.peak_memory_bytes = d.measured_bytes + (run_drop > sel_bytes ? run_drop - sel_bytes : 0);
            m.allocated_memory_bytes = d.allocated_bytes + allocated - sel_bytes;
            m.memory_disturbed = memory_disturbance(m.peak_memory_bytes, m.allocated_memory_bytes, checked_drop,
                                                    run_drop);
            // The gating that ran while timing must have rewritten exactly the checked selection.
            const WordDifference diff = own ? differing_words(b.sel.get(), b.sel_checked.get(), p.sel_elems())
                                            : WordDifference{};
            if (diff.count > 0) {
                const std::int64_t pair = diff.first / p.sel_slots();
                r.outcome = Outcome::incorrect;
                r.check_outcome = Outcome::incorrect;
                r.reason = fmt::format("nondeterministic gating: after timing, {} of {} selection entries differ from "
                                       "the checked selection (first: token {}, head {})",
                                       diff.count, p.sel_elems(), pair / p.heads_q, pair % p.heads_q);
                records.push_back(std::move(r));
                continue;
            }
            // Every timed call must be right, not only the checked first one (SEMANTICS.md §5): the
            // sampled rows again, on what the last timed forward and backward wrote (the truths
            // are the ones computed before timing).
            std::string after;
            if (phase != Phase::bwd) {
                const RowCheck again = check_rows(p, rows, rows_truth, b.out.get(),
                                                  impl.writes_lse ? b.lse.as<float>() : nullptr);
                if (again.outcome != Outcome::passed) after = again.reason;
            }
            if (after.empty() && phase != Phase::fwd) {
                std::string why;
                const BackwardCheckFigures again =
                    check_backward(p, s.seed, rows, sel_rows ? &*sel_rows : nullptr, host_sel ? &*host_sel : nullptr, d,
                                   b.dq.get(), b.dk.get(), b.dv.get(), *sc.backward_truths, why);
                if (again.outcome != Outcome::passed) after = why;
            }
            if (!after.empty()) {
                r.outcome = Outcome::incorrect;
                r.check_outcome = Outcome::incorrect;
                r.reason = "after timing, the last timed call's " + after + " (its first call passed: state kept between calls?)";
                records.push_back(std::move(r));
                continue;
            }
            r.check_outcome = Outcome::passed;
            r.outcome = Outcome::passed;
            r.measured = std::move(m);
            records.push_back(std::move(r));
        }
    } catch (const std::exception& e) {
        fail_all(Outcome::failed, e.what(), Outcome::failed);
    }
}

// speedup_vs_dense: the fastest dense implementation's median over each record's median, per phase.
void fill_speedups(std::vector<BenchRecord>& records) {
    std::map<Phase, std::pair<double, std::string>> best;  // phase -> (median, impl)
    for (const auto& r : records)
        if (r.dense && r.measured) {
            const double m = r.measured->timing.median_ms;
            auto& slot = best[r.phase];
            if (slot.second.empty() || m < slot.first) slot = {m, r.impl};
        }
    for (auto& r : records) {
        const auto it = best.find(r.phase);
        if (it == best.end() || !r.measured) continue;
        r.dense_impl = it->second.second;
        r.speedup_vs_dense = it->second.first / r.measured->timing.median_ms;
    }
}

}  // namespace

std::vector<BenchRecord> bench_records(const CheckCase& s, const BenchOptions& o) {
    std::vector<BenchRecord> records;
    const Problem& p = s.problem;
    try {
        p.validate();
        DeviceState d(p, s.seed);
        std::optional<DeviceBuffer> sel_ref;
        std::optional<HostRows> rows_moba, rows_dense;
        std::optional<ref::GatingResult> gating_truth;
        const bool any_moba = std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return !i->dense; });
        const bool any_dense = std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return i->dense; });
        const bool any_gating = std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return i->has_gating(); });
        const bool any_ungated_moba =
            std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return !i->dense && !i->has_gating(); });
        if (any_ungated_moba) {
            // A MoBA implementation without gating needs a full selection on the device: the naive
            // GPU gating's (fp32), itself checked against float64 gating on the quick matrix.
            const Implementation* naive = find_implementation("naive");
            require_device_memory(static_cast<std::size_t>(p.sel_elems()) * 4 + naive->gating_workspace_bytes(p),
                                  "the reference selection");
            sel_ref.emplace(static_cast<std::size_t>(p.sel_elems()) * 4);
            DeviceBuffer ws(naive->gating_workspace_bytes(p));
            naive->gating(GatingArgs{p, d.cu.as<std::int32_t>(), d.q.get(), d.k.get(), sel_ref->as<std::int32_t>(),
                                     ws.get(), nullptr});
            MOBA_CUDA_CALL(cudaDeviceSynchronize());
        }
        if (any_moba) rows_moba = host_rows(d, sample_tokens(p, s.seed, o.check_rows, false), nullptr);
        if (any_dense)
            rows_dense = host_rows(d, sample_tokens(p, s.seed, o.check_rows, true), rows_moba ? &*rows_moba : nullptr);
        // float64 gating of the sampled MoBA rows: block means once, every past block of those rows.
        if (any_gating) gating_truth = ref::gating_rows(p, row_inputs(*rows_moba, nullptr));
        std::vector<BackwardTruth> backward_truths;
        const StateChecks sc{sel_ref ? &*sel_ref : nullptr, rows_moba ? &*rows_moba : nullptr,
                             rows_dense ? &*rows_dense : nullptr, gating_truth ? &*gating_truth : nullptr,
                             &backward_truths};
        for (const Implementation* impl : o.impls) {
            if (impl->release_memory) impl->release_memory();
            bench_impl(s, *impl, o, d, sc, records);
            if (impl->release_memory) impl->release_memory();
            if (o.on_implementation_done) {
                std::vector<BenchRecord> so_far = records;
                fill_speedups(so_far);
                o.on_implementation_done({so_far.begin(), so_far.end()});
            }
        }
    } catch (const std::exception& e) {
        for (const Implementation* impl : o.impls)
            for (Phase phase : o.phases) {
                BenchRecord r = bench_record_skeleton(s, *impl, phase, o.gating, o.timing.cold, o.timing.warmup_seconds);
                r.outcome = Outcome::failed;
                r.reason = e.what();
                records.push_back(std::move(r));
            }
    }
    fill_speedups(records);
    return records;
}

std::vector<nlohmann::json> run_bench(const CheckCase& s, const BenchOptions& o) {
    const std::vector<BenchRecord> records = bench_records(s, o);
    return {records.begin(), records.end()};
}

}  // namespace moba
