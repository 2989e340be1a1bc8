// `moba bench`: device inputs, the forward check on sampled rows, the timed runs and the
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
#include "harness/device_random.hpp"
#include "harness/gpu_run.hpp"
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

std::string bench_command(const CheckCase& s, const std::string& impl, Phase phase, GatingMode gating, bool cold) {
    return fmt::format("moba bench {} --seed {} --impl {} --phase {} --gating {}{}", s.problem.flags(), s.seed, impl,
                       to_string(phase), to_string(gating), cold ? " --cold" : "");
}

namespace {

using nlohmann::json;

std::size_t elems_bytes(const Problem& p, std::int64_t n) { return static_cast<std::size_t>(n) * dtype_bytes(p.dtype); }

// Inputs of one state, drawn on the device (tensor streams 0..3 = q, k, v, dout).
struct DeviceState {
    Problem p;
    DeviceBuffer cu, q, k, v, dout;
    DeviceState(const Problem& problem, std::uint64_t seed) : p(problem) {
        require_device_memory(2 * elems_bytes(p, p.q_elems()) + 2 * elems_bytes(p, p.kv_elems()),
                              fmt::format("the inputs of {}", p.flags()));
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

// What the forward check needs on the host: full k, v and the sampled rows of q.
struct HostRows {
    std::shared_ptr<const std::vector<float>> k, v;  // shared between the MoBA and dense rows
    std::vector<std::int64_t> tokens;
    std::vector<float> q_rows;
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
    for (std::int64_t t : tokens) {
        const auto r = download_floats(p, d.q.get(), t * row, row);
        h.q_rows.insert(h.q_rows.end(), r.begin(), r.end());
    }
    return h;
}

// Forward check on the sampled rows: out and lse against float64, bounds from the baseline.
struct RowCheck {
    Outcome outcome = Outcome::passed;
    std::string reason;
    double worst_ratio = 0;
};

RowCheck check_rows(const Problem& p, const HostRows& h, const Selection* sel_rows, const void* out,
                    const float* lse_dev) {
    ref::RowInputs in;
    in.tokens = h.tokens;
    in.q_rows = h.q_rows;
    in.k = h.k.get();
    in.v = h.v.get();
    if (sel_rows) in.sel_rows = *sel_rows;
    const ref::Forward truth = ref::forward_rows(p, in);
    const ForwardOutput base = ref::baseline_forward_rows(p, in);
    const std::int64_t row = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    const auto n = static_cast<std::int64_t>(h.tokens.size());
    std::vector<float> got_out, got_lse(static_cast<std::size_t>(n * p.heads_q));
    for (std::int64_t t : h.tokens) {
        const auto r = download_floats(p, out, t * row, row);
        got_out.insert(got_out.end(), r.begin(), r.end());
    }
    for (int hd = 0; hd < p.heads_q; ++hd)
        for (std::int64_t i = 0; i < n; ++i)
            MOBA_CUDA_CALL(cudaMemcpy(&got_lse[static_cast<std::size_t>(hd * n + i)],
                                      lse_dev + static_cast<std::int64_t>(hd) * p.total_tokens() + h.tokens[static_cast<std::size_t>(i)],
                                      4, cudaMemcpyDeviceToHost));
    RowCheck rc;
    for (const TensorCheck& c :
         {compare_tensor("out", got_out, truth.out, base.out, kForwardFactor, tensor_atol(p.dtype)),
          compare_tensor("lse", got_lse, truth.lse, base.lse, kForwardFactor, kLseAtol)}) {
        rc.worst_ratio = std::max(rc.worst_ratio, c.ratio);
        if (c.outcome != Outcome::passed && rc.outcome == Outcome::passed) {
            rc.outcome = c.outcome;
            rc.reason = fmt::format("forward check on {} sampled rows, {}: {}", n, c.tensor, c.reason);
        }
    }
    return rc;
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

}  // namespace

BenchRecord bench_record_skeleton(const CheckCase& s, const Implementation& impl, Phase phase, GatingMode gating,
                                  bool cold) {
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
    r.command = bench_command(s, impl.name, phase, gating, cold);
    return r;  // outcome and check_outcome: skipped
}

namespace {

// Buffers of one implementation's runs.
struct RunBuffers {
    DeviceBuffer out, lse, dq, dk, dv, sel, workspace, gating_workspace;
};

void bench_impl(const CheckCase& s, const Implementation& impl, const BenchOptions& o, const DeviceState& d,
                const DeviceBuffer* sel_ref, const HostRows* rows_moba, const HostRows* rows_dense,
                std::vector<BenchRecord>& records) {
    const Problem& p = s.problem;
    auto fail_all = [&](Outcome outcome, const std::string& reason, Outcome check_outcome) {
        for (Phase phase : o.phases) {
            BenchRecord r = bench_record_skeleton(s, impl, phase, o.gating, o.timing.cold);
            r.outcome = outcome;
            r.reason = reason;
            r.check_outcome = check_outcome;
            records.push_back(std::move(r));
        }
    };
    const Support support = impl.supports(p);
    if (!support.ok) return fail_all(Outcome::not_supported, support.reason, Outcome::not_supported);
    const bool need_bwd = std::any_of(o.phases.begin(), o.phases.end(), [](Phase ph) { return ph != Phase::fwd; });
    if (need_bwd && !impl.has_backward()) return fail_all(Outcome::not_supported, impl.name + " has no backward", Outcome::skipped);
    try {
        const std::size_t idle_free = device_memory().free_bytes;
        const std::size_t ws = impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0;
        const std::size_t gws = impl.gating_workspace_bytes ? impl.gating_workspace_bytes(p) : 0;
        const std::size_t q_bytes = elems_bytes(p, p.q_elems()), kv_bytes = elems_bytes(p, p.kv_elems());
        const std::size_t sel_bytes = impl.has_gating() ? static_cast<std::size_t>(p.sel_elems()) * 4 : 0;
        require_device_memory(q_bytes + 4 * static_cast<std::size_t>(p.lse_elems()) + ws + gws + sel_bytes +
                                  (need_bwd ? q_bytes + 2 * kv_bytes : 0),
                              fmt::format("{} on {}", impl.name, p.flags()));
        RunBuffers b;
        b.out = DeviceBuffer(q_bytes);
        b.lse = DeviceBuffer(4 * static_cast<std::size_t>(p.lse_elems()));
        b.workspace = DeviceBuffer(ws);
        b.gating_workspace = DeviceBuffer(gws);
        b.sel = DeviceBuffer(sel_bytes);
        if (need_bwd) {
            b.dq = DeviceBuffer(q_bytes);
            b.dk = DeviceBuffer(kv_bytes);
            b.dv = DeviceBuffer(kv_bytes);
        }
        AttentionArgs a = forward_args(p, d.cu, d.q, d.k, d.v, sel_ref ? sel_ref->as<std::int32_t>() : nullptr,
                                       b.out, b.lse, b.workspace);
        a.dout = d.dout.get();
        a.dq = b.dq.get();
        a.dk = b.dk.get();
        a.dv = b.dv.get();
        GatingArgs g{p, d.cu.as<std::int32_t>(), d.q.get(), d.k.get(), b.sel.as<std::int32_t>(),
                     b.gating_workspace.get(), nullptr};

        // Correct first: the forward with the reference selection, checked on sampled rows.
        b.out.poison();
        b.lse.poison();
        impl.forward(a);
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
        const HostRows& rows = impl.dense ? *rows_dense : *rows_moba;
        std::optional<Selection> sel_rows;
        if (!impl.dense) sel_rows = selection_rows(p, *sel_ref, rows.tokens);
        const RowCheck rc = check_rows(p, rows, sel_rows ? &*sel_rows : nullptr, b.out.get(), b.lse.as<float>());
        if (rc.outcome != Outcome::passed) return fail_all(Outcome::skipped, "not timed: " + rc.reason, rc.outcome);

        for (Phase phase : o.phases) {
            BenchRecord r = bench_record_skeleton(s, impl, phase, o.gating, o.timing.cold);
            BenchMeasurement m;
            m.check_worst_ratio = rc.worst_ratio;
            const bool gate_in = impl.has_gating() && o.gating == GatingMode::included && phase != Phase::bwd;
            AttentionArgs timed = a;
            if (gate_in) timed.sel = b.sel.as<std::int32_t>();
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
            if (impl.has_gating() && o.gating == GatingMode::separate && phase != Phase::bwd) {
                auto gate_body = [&](cudaStream_t stream) {
                    GatingArgs gg = g;
                    gg.stream = stream;
                    impl.gating(gg);
                };
                m.gating_ms = measure(gate_body, nullptr, o.timing).median_ms;
            }
            const std::size_t busy_free = device_memory().free_bytes;
            m.peak_memory_bytes = idle_free > busy_free ? idle_free - busy_free : 0;
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
        // The selection every MoBA implementation is fed for its check: the naive GPU gating
        // (fp32), itself checked against the float64 gating on the quick matrix.
        std::optional<DeviceBuffer> sel_ref;
        std::optional<HostRows> rows_moba, rows_dense;
        const bool any_moba = std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return !i->dense; });
        const bool any_dense = std::any_of(o.impls.begin(), o.impls.end(), [](auto* i) { return i->dense; });
        if (any_moba) {
            const Implementation* naive = find_implementation("naive");
            require_device_memory(static_cast<std::size_t>(p.sel_elems()) * 4 + naive->gating_workspace_bytes(p),
                                  "the reference selection");
            sel_ref.emplace(static_cast<std::size_t>(p.sel_elems()) * 4);
            DeviceBuffer ws(naive->gating_workspace_bytes(p));
            naive->gating(GatingArgs{p, d.cu.as<std::int32_t>(), d.q.get(), d.k.get(), sel_ref->as<std::int32_t>(),
                                     ws.get(), nullptr});
            MOBA_CUDA_CALL(cudaDeviceSynchronize());
            rows_moba = host_rows(d, sample_tokens(p, s.seed, o.check_rows, false), nullptr);
        }
        if (any_dense)
            rows_dense = host_rows(d, sample_tokens(p, s.seed, o.check_rows, true), rows_moba ? &*rows_moba : nullptr);
        for (const Implementation* impl : o.impls)
            bench_impl(s, *impl, o, d, sel_ref ? &*sel_ref : nullptr, rows_moba ? &*rows_moba : nullptr,
                       rows_dense ? &*rows_dense : nullptr, records);
    } catch (const std::exception& e) {
        for (const Implementation* impl : o.impls)
            for (Phase phase : o.phases) {
                BenchRecord r = bench_record_skeleton(s, *impl, phase, o.gating, o.timing.cold);
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
