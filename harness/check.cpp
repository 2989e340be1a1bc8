// `moba check`: truths (float64 on the CPU or on the GPU), the judging of every implementation
// against them, and the check records that say how it went.
#include "harness/check.hpp"

#include <cmath>
#include <algorithm>
#include <exception>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "harness/compare.hpp"
#include "core/cuda_check.hpp"
#include "harness/gpu_run.hpp"
#include "kernels/moba/head_passes.hpp"  // kAccumulatorBudgetEnv
#include "harness/held_stream.hpp"
#include "harness/inputs.hpp"
#include "harness/naive_baseline.hpp"
#include "harness/records.hpp"
#include "harness/report.hpp"  // kernel_env_prefix
#include "reference/gpu/attention64.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

using nlohmann::json;

constexpr const char* kBaselineName = "cpu_baseline";

void phase(const CheckOptions& o, const std::string& name) {
    if (o.progress) o.progress(name);
}

// The truth for one (problem, selection) and the same-precision baseline beside it.
struct Truth {
    std::vector<double> out, lse, dq, dk, dv;
    std::vector<float> base_out, base_lse, base_dq, base_dk, base_dv;
};

CheckRecord record(const CheckCase& c, const std::string& impl, const std::string& check,
                   const std::string& tensor, ReferenceKind ref, Outcome outcome, const std::string& reason) {
    CheckRecord r;
    r.config = c;
    r.impl = impl;
    r.check = check;
    r.tensor = tensor;
    r.reference = ref;
    r.command = reproduce_command(c, impl, ref);
    r.outcome = outcome;
    r.reason = reason;
    return r;
}

CheckRecord tensor_record(const CheckCase& c, const std::string& impl, const std::string& check,
                          ReferenceKind ref, const TensorCheck& t) {
    CheckRecord r = record(c, impl, check, t.tensor, ref, t.outcome, t.reason);
    r.tensor_figures = t;
    return r;
}

CheckRecord gating_record(const CheckCase& c, const std::string& impl, ReferenceKind ref,
                          const GatingCheck& g) {
    CheckRecord r = record(c, impl, "gating", "selection", ref, g.outcome, g.reason);
    r.gating_figures = g;
    return r;
}

// A record without figures: the implementation did not run, or the truth could not be had.
CheckRecord outcome_record(const CheckCase& c, const std::string& impl, const std::string& check,
                           ReferenceKind ref, Outcome outcome, const std::string& reason) {
    return record(c, impl, check, "", ref, outcome, reason);
}

Truth cpu_truth(const Problem& p, const HostInputs& in, const Selection& sel, bool full, const CheckOptions& o) {
    phase(o, full ? "float64 truth (full attention, CPU)" : "float64 truth (CPU)");
    Truth t;
    ref::Forward f = full ? ref::full_attention_forward(p, in) : ref::attention_forward(p, in, sel);
    ref::Gradients g = full ? ref::full_attention_backward(p, in) : ref::attention_backward(p, in, sel);
    t.out = std::move(f.out);
    t.lse = std::move(f.lse);
    t.dq = std::move(g.dq);
    t.dk = std::move(g.dk);
    t.dv = std::move(g.dv);
    phase(o, "baseline (CPU)");
    ForwardOutput bf = ref::baseline_forward(p, in, sel);
    GradientOutput bg = ref::baseline_backward(p, in, sel);
    t.base_out = std::move(bf.out);
    t.base_lse = std::move(bf.lse);
    t.base_dq = std::move(bg.dq);
    t.base_dk = std::move(bg.dk);
    t.base_dv = std::move(bg.dv);
    return t;
}

// float64 on the GPU; the baseline beside it is SEMANTICS.md §5.1's computed by the naive
// kernels in the dtype (the CPU baseline would take too long at these lengths).
Truth gpu_truth(const Problem& p, const HostInputs& in, const Selection& sel, bool full, const CheckOptions& o) {
    phase(o, full ? "float64 truth (full attention, GPU)" : "float64 truth (GPU)");
    ref::gpu::Result r = full ? ref::gpu::full_attention(p, in) : ref::gpu::attention(p, in, sel);
    Truth t;
    t.out = std::move(r.forward.out);
    t.lse = std::move(r.forward.lse);
    t.dq = std::move(r.gradients.dq);
    t.dk = std::move(r.gradients.dk);
    t.dv = std::move(r.gradients.dv);
    phase(o, "baseline (naive kernels)");
    AttentionRun base = naive_baseline(p, in, sel);
    t.base_out = std::move(base.forward.out);
    t.base_lse = std::move(base.forward.lse);
    t.base_dq = std::move(base.gradients.dq);
    t.base_dk = std::move(base.gradients.dk);
    t.base_dv = std::move(base.gradients.dv);
    return t;
}

// Records for out, lse (and dq, dk, dv when gradients were computed) of one run.
// An implementation that writes no lse (writes_lse false) has that record not supported.
void judge_attention(const CheckCase& c, const std::string& impl, ReferenceKind ref,
                     const std::string& fwd_check, const std::string& bwd_check,
                     const ForwardOutput& f, const GradientOutput* g, const Truth& t,
                     std::vector<CheckRecord>& records, bool lse_written = true) {
    const double atol = tensor_atol(c.problem.dtype);
    const auto d = static_cast<std::size_t>(c.problem.head_dim);
    const Rows out_rows{d, static_cast<std::size_t>(c.problem.heads_q)};
    // Gradients: regions measured, not judged (SEMANTICS.md §5).
    const Rows dq_rows{d, static_cast<std::size_t>(c.problem.heads_q), false};
    const Rows kv_rows{d, static_cast<std::size_t>(c.problem.heads_kv), false};
    records.push_back(tensor_record(c, impl, fwd_check, ref,
                                    compare_tensor("out", f.out, t.out, t.base_out, kForwardFactor, atol, out_rows)));
    if (lse_written) {
        records.push_back(tensor_record(c, impl, fwd_check, ref,
                                        compare_tensor("lse", f.lse, t.lse, t.base_lse, kForwardFactor, kLseAtol)));
    } else {
        CheckRecord r = record(c, impl, fwd_check, "lse", ref, Outcome::not_supported,
                               impl + " returns no lse (its out is judged)");
        records.push_back(std::move(r));
    }
    if (!g) return;
    records.push_back(tensor_record(c, impl, bwd_check, ref,
                                    compare_tensor("dq", g->dq, t.dq, t.base_dq, kGradientFactor, atol, dq_rows)));
    records.push_back(tensor_record(c, impl, bwd_check, ref,
                                    compare_tensor("dk", g->dk, t.dk, t.base_dk, kGradientFactor, atol, kv_rows)));
    records.push_back(tensor_record(c, impl, bwd_check, ref,
                                    compare_tensor("dv", g->dv, t.dv, t.base_dv, kGradientFactor, atol, kv_rows)));
}

// Without a GPU the baseline itself is judged: its error against float64 must stay within
// what its dtype's rounding explains (rel L2 <= 4 u, u the unit roundoff; 1e-5 for fp32).
// This catches a broken rounding emulation; it is not a kernel check.
// A truth that is exactly zero has no relative error: dq and dk of a batch whose every row
// attends one key (one-token sequences: P = 1, so dS = dP - Delta = 0), whose baseline values
// are the rounding residue of dP - Delta (terms of size |dout| |v|). Then every baseline value
// must be within 4 u of the largest term it sums, scale x max|dout| x max|v| x max|k| (dq) or
// x max|q| x group (dk); bound_kind says which rule judged.
void judge_baseline(const CheckCase& c, const HostInputs& in, const std::string& fwd_check,
                    const std::string& bwd_check, const Truth& t, std::vector<CheckRecord>& records) {
    const Problem& p = c.problem;
    const double u = p.dtype == DType::bf16 ? std::ldexp(1.0, -8)
                     : p.dtype == DType::f16 ? std::ldexp(1.0, -11)
                                             : 2.5e-6;
    const double limit = 4 * u;
    auto max_abs = [](const std::vector<float>& x) {
        double m = 0;
        for (float v : x) m = std::max(m, static_cast<double>(std::fabs(v)));
        return m;
    };
    const double dp_terms = max_abs(in.dout) * max_abs(in.v);
    // term_scale: the largest term the tensor sums, for a truth that is exactly zero (0: none).
    auto one = [&](const std::string& check, const char* name, std::span<const float> base,
                   const std::vector<double>& truth, double term_scale) {
        TensorCheck tc = compare_tensor(name, base, truth, base, 1.0, 0.0);
        const bool zero_truth = std::all_of(truth.begin(), truth.end(), [](double x) { return x == 0.0; });
        std::string kind = "rel_l2 <= 4u";
        if (zero_truth && term_scale > 0) {
            kind = "max_abs <= 4u x term scale (truth exactly 0)";
            tc.bound = limit * term_scale;
            tc.ratio = tc.max_abs_err / tc.bound;
            if (tc.outcome == Outcome::passed && !(tc.max_abs_err <= tc.bound)) {
                tc.outcome = Outcome::incorrect;
                tc.reason = fmt::format("the truth is exactly 0 and the baseline's largest value {:.3e} exceeds "
                                        "4u x the largest term ({:.3e})", tc.max_abs_err, tc.bound);
            }
        } else {
            tc.bound = limit;
            tc.ratio = tc.rel_l2_err / limit;
            if (tc.outcome == Outcome::passed && !(tc.rel_l2_err <= limit)) {
                tc.outcome = Outcome::incorrect;
                tc.reason = fmt::format("baseline relative L2 error {:.3e} exceeds 4u = {:.3e}", tc.rel_l2_err, limit);
            }
        }
        CheckRecord r = tensor_record(c, kBaselineName, check, ReferenceKind::cpu, tc);
        r.bound_kind = kind;
        records.push_back(std::move(r));
    };
    one(fwd_check, "out", t.base_out, t.out, 0);
    one(fwd_check, "lse", t.base_lse, t.lse, 0);
    one(bwd_check, "dq", t.base_dq, t.dq, p.scale() * dp_terms * max_abs(in.k));
    one(bwd_check, "dk", t.base_dk, t.dk, p.scale() * dp_terms * max_abs(in.q) * p.group());
    one(bwd_check, "dv", t.base_dv, t.dv, 0);
}

// "" when a gating's second call (same workspace) wrote the first call's selection, else how
// many entries differ and where the first is (SEMANTICS.md §5: every call is judged).
std::string second_call_difference(const Selection& first, const Selection& again) {
    std::size_t differ = 0, at = 0;
    for (std::size_t i = 0; i < first.blocks.size() && i < again.blocks.size(); ++i)
        if (first.blocks[i] != again.blocks[i] && differ++ == 0) at = i;
    if (differ == 0 && first.blocks.size() == again.blocks.size()) return "";
    return fmt::format("a second call on the same workspace wrote another selection: {} of {} entries differ "
                       "(first at entry {}); a gating must not depend on what its last call left, and must "
                       "launch on args.stream (the second call's is a non-blocking stream held {} ms)",
                       differ, first.blocks.size(), at, kSecondCallHoldMs);
}

// The second forward and backward (AttentionRun::forward_again, gradients_again) judged by the
// same rules. Only a tensor that passed on the first call and fails on the second adds a record
// (its figures, the reason saying which call), so a correct run's records are unchanged and a
// failure is not reported twice.
void judge_second_calls(const CheckCase& c, const Implementation& impl, ReferenceKind ref,
                        const std::string& fwd_check, const std::string& bwd_check, const AttentionRun& run,
                        const Truth& truth, std::size_t first_record, std::vector<CheckRecord>& records) {
    if (!run.forward_again) return;
    std::vector<CheckRecord> again;
    judge_attention(c, impl.name, ref, fwd_check, bwd_check, *run.forward_again,
                    run.gradients_again ? &*run.gradients_again : nullptr, truth, again, impl.writes_lse);
    // The first call's records are [first_record, firsts_end); additions go after them (by index:
    // push_back moves the records).
    const std::size_t firsts_end = records.size();
    for (CheckRecord& r : again) {
        if (!is_failure(r.outcome)) continue;
        bool failed_first = false;
        for (std::size_t i = first_record; i < firsts_end; ++i) {
            if (records[i].check != r.check || records[i].tensor != r.tensor) continue;
            failed_first = is_failure(records[i].outcome);
            break;
        }
        if (failed_first) continue;
        r.reason = fmt::format("on the second call (the same workspace, after a forward{}; on a non-blocking "
                               "stream held {} ms, so work launched on another stream ran before the "
                               "outputs were poisoned{}): {}",
                               run.gradients_again ? " and a backward" : "", kSecondCallHoldMs,
                               second_calls_one_kv_head_per_pass(c.problem)
                                   ? fmt::format("; with {}=0, one kv head per head pass", sparse::kAccumulatorBudgetEnv)
                                   : "",
                               r.reason);
        records.push_back(std::move(r));
    }
}

// One incorrect `bounds` record per write outside the outputs or changed input (SEMANTICS.md §5);
// none when the run kept to its outputs, so a clean run's records are what they always were.
void record_stray_writes(const CheckCase& c, const std::string& impl, ReferenceKind ref,
                         const std::vector<std::string>& stray, std::vector<CheckRecord>& records) {
    for (const std::string& what : stray) records.push_back(outcome_record(c, impl, "bounds", ref, Outcome::incorrect, what));
}

// Whether impl is checked on p: what it supports, and a dense implementation only at zero
// sparsity.
Support checkable(const Implementation& impl, const Problem& p) {
    if (!impl.has_forward()) return Support::no(decode_only_reason(impl));
    Support s = impl.supports(p);
    if (s.ok && impl.dense && !p.zero_sparsity())
        s = Support::no("a dense implementation computes full causal attention; it is checked at zero "
                        "sparsity (k >= n) only");
    return s;
}

void check_implementation(const CheckCase& c, const Implementation& impl, const CheckOptions& o,
                          const HostInputs& in, const ref::GatingResult& gate,
                          const Selection& sel, const Truth& truth, const std::string& fwd_check,
                          const std::string& bwd_check, std::vector<CheckRecord>& records) {
    const Problem& p = c.problem;
    phase(o, impl.name);
    try {
        DeviceInputs din(impl, p, in);
        std::vector<std::string> stray;
        if (impl.has_gating()) {
            Selection again;
            const Selection got = run_gating(impl, din, &stray, o.call_twice ? &again : nullptr);
            records.push_back(gating_record(c, impl.name, o.reference,
                                            compare_gating(p, got, gate, in, impl.block_means == BlockMeans::rounded)));
            if (const std::string why = o.call_twice ? second_call_difference(got, again) : "";
                !why.empty())
                records.push_back(outcome_record(c, impl.name, "gating", o.reference, Outcome::incorrect, why));
        }
        const AttentionRun run = run_attention(impl, din, sel, impl.has_backward(), o.call_twice);
        const std::size_t first = records.size();
        judge_attention(c, impl.name, o.reference, fwd_check, bwd_check, run.forward,
                        impl.has_backward() ? &run.gradients : nullptr, truth, records, impl.writes_lse);
        judge_second_calls(c, impl, o.reference, fwd_check, bwd_check, run, truth, first, records);
        stray.insert(stray.end(), run.stray_writes.begin(), run.stray_writes.end());
        record_stray_writes(c, impl.name, o.reference, stray, records);
    } catch (const std::exception& e) {
        records.push_back(outcome_record(c, impl.name, fwd_check, o.reference, Outcome::failed, e.what()));
    }
}

// Flat index of the first NaN/Inf of x, or -1.
std::int64_t first_nonfinite(const std::vector<float>& x) {
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x[i])) return static_cast<std::int64_t>(i);
    return -1;
}

// Attended pairs x D of the problem's selection (dense pairs when zero sparsity): the work of
// one float64 forward pass, up to a constant.
double reference_work(const Problem& p) {
    double pairs = 0;
    for (int len : p.seqlens) {
        const double keys_per_query = std::min<double>(len, static_cast<double>(p.topk) * p.block);
        pairs += std::min(0.5 * len * (len + 1.0), len * keys_per_query);
    }
    return pairs * p.heads_q * p.head_dim;
}

// Reasons not to start: bad inputs, a truth too costly for the CPU. Empty when fine.
std::string refusal(const CheckCase& c, const HostInputs& in, const CheckOptions& o) {
    const std::pair<const char*, const std::vector<float>*> tensors[] = {
        {"q", &in.q}, {"k", &in.k}, {"v", &in.v}, {"dout", &in.dout}};
    for (const auto& [name, values] : tensors) {
        const std::int64_t bad = first_nonfinite(*values);
        if (bad >= 0) return fmt::format("input {} holds {} at flat index {}", name, (*values)[bad], bad);
    }
    const Problem& p = c.problem;
    if (in.q.size() != static_cast<std::size_t>(p.q_elems()) || in.k.size() != static_cast<std::size_t>(p.kv_elems()) ||
        in.v.size() != in.k.size() || in.dout.size() != in.q.size())
        return "input sizes do not match the problem";
    const double work = cpu_reference_work(p);
    if (o.reference == ReferenceKind::cpu && !o.gating_only && work > kMaxCpuReferenceWork)
        return fmt::format("the float64 CPU reference would take about {:.1e} pair x D operations (limit {:.1e}); "
                           "use --reference gpu (float64 on the GPU) for this size", work, kMaxCpuReferenceWork);
    return {};
}

// All checks of one problem whose selection is the reference gating's (or all blocks).
void check_problem(const CheckCase& c, const HostInputs& in, const CheckOptions& o,
                   std::vector<CheckRecord>& records) {
    const Problem& p = c.problem;
    const bool zero = p.zero_sparsity();
    const std::string fwd_check = zero ? "zero_sparsity" : "forward";
    const std::string bwd_check = zero ? "zero_sparsity" : "backward";
    if (const std::string why = refusal(c, in, o); !why.empty()) {
        records.push_back(outcome_record(c, "reference", fwd_check, o.reference, Outcome::failed, why));
        return;
    }
    // Before spending time on the truth, record the implementations not checked on this problem
    // and refuse those whose run would not fit in free device memory; with none left, skip the
    // truth (minutes per case of a long suite).
    std::vector<const Implementation*> impls;
    for (const Implementation* impl : o.gpu ? o.impls : std::vector<const Implementation*>{}) {
        if (o.gating_only && !impl->has_gating()) {
            records.push_back(outcome_record(c, impl->name, "gating", o.reference, Outcome::not_supported,
                                             "has no gating of its own (--gating-only)"));
            continue;
        }
        if (const Support s = checkable(*impl, p); !s.ok) {
            records.push_back(outcome_record(c, impl->name, fwd_check, o.reference, Outcome::not_supported, s.reason));
            continue;
        }
        try {
            require_device_memory(device_bytes_needed(*impl, p), impl->name);
            impls.push_back(impl);
        } catch (const std::exception& e) {
            records.push_back(outcome_record(c, impl->name, fwd_check, o.reference, Outcome::failed, e.what()));
        }
    }
    if (o.gpu && impls.empty()) return;

    if (o.gating_only) {
        if (o.reference != ReferenceKind::cpu)
            throw std::invalid_argument("--gating-only judges against the float64 gating: --reference cpu");
        phase(o, "float64 gating");
        const ref::GatingResult gate = ref::gating(p, in);
        if (!o.gpu) {
            records.push_back(gating_record(c, kBaselineName, o.reference,
                                            compare_gating(p, ref::baseline_gating(p, in), gate, in)));
            records.back().command += " --gating-only";
            return;
        }
        for (const Implementation* impl : impls) {
            phase(o, impl->name);
            try {
                DeviceInputs din(*impl, p, in);
                std::vector<std::string> stray;
                records.push_back(gating_record(c, impl->name, o.reference,
                                                compare_gating(p, run_gating(*impl, din, &stray), gate, in,
                                                               impl->block_means == BlockMeans::rounded)));
                record_stray_writes(c, impl->name, o.reference, stray, records);
            } catch (const std::exception& e) {
                records.push_back(outcome_record(c, impl->name, "gating", o.reference, Outcome::failed, e.what()));
            }
            records.back().command += " --gating-only";
        }
        return;
    }
    // Either truth is judged against the float64 gating's selection, and the gating check is
    // recorded; at zero sparsity the selection is every block.
    phase(o, "float64 gating");
    const ref::GatingResult gate = ref::gating(p, in);
    const Selection sel = zero ? ref::full_selection(p) : gate.selection;
    const Truth truth = o.reference == ReferenceKind::cpu ? cpu_truth(p, in, sel, zero, o)
                                                          : gpu_truth(p, in, sel, zero, o);
    if (!o.gpu) {
        records.push_back(gating_record(c, kBaselineName, o.reference,
                                        compare_gating(p, ref::baseline_gating(p, in), gate, in)));
        judge_baseline(c, in, fwd_check, bwd_check, truth, records);
        return;
    }
    for (const Implementation* impl : impls)
        check_implementation(c, *impl, o, in, gate, sel, truth, fwd_check, bwd_check, records);
}

}  // namespace

double cpu_reference_work(const Problem& p) { return reference_work(p) * (p.zero_sparsity() ? 1.0 : 2.0); }

double check_host_bytes(const Problem& p, const CheckOptions& o) {
    // Element counts as doubles: the point is to refuse sizes whose bytes overflow nothing.
    auto tensors = [](const Problem& x) {
        struct Counts { double q, kv, lse, sel; };
        const double total = static_cast<double>(x.total_tokens());
        return Counts{total * x.heads_q * x.head_dim, total * x.heads_kv * x.head_dim, total * x.heads_q,
                      total * x.heads_q * x.sel_slots()};
    };
    const auto n = tensors(p);
    const double inputs = 4 * (2 * n.q + 2 * n.kv);  // q, k, v, dout as float
    // What one check_problem holds beside the inputs.
    auto case_bytes = [&](const Problem& x) {
        const auto m = tensors(x);
        const double gating = 4 * m.sel + 24 * m.lse;          // selection, three float64 [total, Hq]
        const double other_gating = 4 * m.sel;                 // the baseline's or an implementation's
        if (o.gating_only) return gating + other_gating;
        const double dense = 2 * m.q + m.lse + 2 * m.kv;       // out, lse, dq, dk, dv
        const double truth = 8 * dense + 16 * m.lse;           // float64, with lse and delta scratch
        const double baseline = 4 * dense;
        const double impl_run = o.gpu ? 4 * dense + 4 * (2 * m.q + 2 * m.kv) : 0;  // results, staged inputs
        const double selection = x.zero_sparsity() ? 4 * m.sel : 0;  // full_selection
        return gating + other_gating + truth + baseline + impl_run + selection;
    };
    double rest = case_bytes(p);
    if (o.add_zero_sparsity && !o.gating_only && !p.zero_sparsity()) {
        Problem full = p;
        full.topk = p.max_blocks();
        rest = std::max(rest, case_bytes(full));
    }
    return inputs + rest;
}

std::int64_t parse_mem_available(std::string_view text) {
    const std::string_view key = "MemAvailable:";
    const std::size_t at = text.find(key);
    if (at == std::string_view::npos) return -1;
    std::size_t i = at + key.size();
    while (i < text.size() && text[i] == ' ') ++i;
    std::int64_t kib = 0;
    const std::size_t digits = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - digits < 15) kib = kib * 10 + (text[i++] - '0');
    if (i == digits || text.substr(i, 3) != " kB") return -1;
    return kib * 1024;
}

std::int64_t host_memory_available() {
    std::ifstream in("/proc/meminfo");
    if (!in) return -1;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_mem_available(text);
}

std::string host_memory_refusal(const CheckCase& c, const CheckOptions& o, std::int64_t host_available) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const double bytes = check_host_bytes(c.problem, o);
    if (host_available < 0 || bytes <= static_cast<double>(host_available)) return {};
    CheckOptions main_case = o;
    main_case.add_zero_sparsity = false;
    const double main_bytes = check_host_bytes(c.problem, main_case);
    const std::string zero =
        main_bytes < bytes ? fmt::format(", {:.1f} GiB of it for the zero-sparsity equivalence (k raised to n, whose "
                                         "selections hold every block) checked beside a single configuration",
                                         (bytes - main_bytes) / gib)
                           : "";
    return fmt::format(
        "{} needs about {:.1f} GiB of host memory (inputs, float64 gating and truth, baseline{}) but {:.1f} GiB "
        "are available (MemAvailable); refused before drawing the inputs. Check a smaller shape (fewer tokens "
        "or heads){}",
        c.problem.flags(), bytes / gib, zero, static_cast<double>(host_available) / gib,
        o.gating_only ? "" : ", or only the gating with --gating-only");
}

std::string cpu_reference_refusal(const CheckCase& c, const CheckOptions& o) {
    const Problem& p = c.problem;
    if (o.reference != ReferenceKind::cpu || o.gating_only) return {};
    double work = cpu_reference_work(p);
    const char* which = "";
    if (o.add_zero_sparsity && !p.zero_sparsity()) {
        Problem full = p;
        full.topk = p.max_blocks();
        if (cpu_reference_work(full) > kMaxCpuReferenceWork && work <= kMaxCpuReferenceWork)
            which = " for the zero-sparsity equivalence (k raised to n, checked beside a single configuration)";
        work = std::max(work, cpu_reference_work(full));
    }
    if (work <= kMaxCpuReferenceWork) return {};
    return fmt::format("the float64 CPU reference would take about {:.1e} pair x D operations{} (limit {:.1e}, about "
                       "a minute on 16 cores); use --reference gpu (float64 on the GPU) for this size, --gating-only, "
                       "or a smaller shape",
                       work, which, kMaxCpuReferenceWork);
}

std::string device_memory_refusal(const CheckCase& c, const CheckOptions& o) {
    if (!o.gpu) return {};
    if (o.reference == ReferenceKind::gpu && !o.gating_only) {
        // The truth runs first and frees its memory before the implementations run; its own
        // check after planning is exact, this one comes before the inputs are drawn.
        const double need = ref::gpu::device_bytes_estimate(c.problem, !c.problem.zero_sparsity(), true);
        const MemoryInfo m = device_memory();
        if (need > ref::gpu::kMaxFreeMemoryShare * static_cast<double>(m.free_bytes))
            return fmt::format("the float64 GPU truth needs about {:.2f} GiB of device memory for {} but {:.2f} GiB "
                               "are free; refused before drawing the inputs. Check a smaller shape (fewer tokens or "
                               "heads), or only the gating with --gating-only",
                               need / (1u << 30), c.problem.flags(), static_cast<double>(m.free_bytes) / (1u << 30));
    }
    std::string why;
    for (const Implementation* impl : o.impls) {
        if (o.gating_only && !impl->has_gating()) continue;
        if (!checkable(*impl, c.problem).ok) continue;
        try {
            require_device_memory(device_bytes_needed(*impl, c.problem), impl->name);
            return {};  // one fits: the others are recorded as failed, as they come
        } catch (const OutOfDeviceMemory& e) {
            why += (why.empty() ? "" : "; ") + std::string(e.what());
        }
    }
    if (why.empty()) return {};
    return "no implementation's run fits in free device memory: " + why + ". Check a smaller shape";
}

void PrintTo(const CheckCase& c, std::ostream* os) {
    *os << c.problem.flags() << " --seed " << c.seed << " --inputs " << to_string(c.inputs);
}

std::string reproduce_command(const CheckCase& c, const std::string& impl, ReferenceKind ref) {
    const CommandNaming naming = command_naming(impl);
    std::string cmd = kernel_env_prefix() + fmt::format("{} check {} --seed {} --inputs {}", naming.tool,
                                                        c.problem.flags(), c.seed, to_string(c.inputs));
    if (impl != kBaselineName) cmd += " " + naming.impl_flags;
    if (ref == ReferenceKind::gpu) cmd += " --reference gpu";
    return cmd;
}

int expected_phases(const CheckCase& c, const CheckOptions& o) {
    auto pass = [&](const Problem& p) {
        int impls = 0;
        if (o.gpu)
            for (const Implementation* impl : o.impls)
                impls += checkable(*impl, p).ok && (!o.gating_only || impl->has_gating());
        return (o.gating_only ? 1 : 3) + impls;
    };
    int phases = 1 + pass(c.problem);
    if (o.add_zero_sparsity && !o.gating_only && !c.problem.zero_sparsity()) {
        Problem full = c.problem;
        full.topk = full.max_blocks();
        phases += 1 + pass(full);
    }
    return phases;
}

std::vector<json> run_checks(const CheckCase& c, const CheckOptions& o) {
    // A truth too costly for the CPU is refused before the inputs are drawn (minutes at the
    // lengths where it applies).
    CheckOptions main_case = o;
    main_case.add_zero_sparsity = false;  // the zero-sparsity case is refused on its own, after
    if (const std::string why = cpu_reference_refusal(c, main_case); !why.empty())
        return {outcome_record(c, "reference", c.problem.zero_sparsity() ? "zero_sparsity" : "forward", o.reference,
                               Outcome::failed, why)};
    phase(o, "drawing inputs");
    return run_checks_on(c, make_inputs(c.problem, c.seed, c.inputs), o);
}

std::vector<json> run_checks_on(const CheckCase& c, const HostInputs& in, const CheckOptions& o) {
    std::vector<CheckRecord> records;
    try {
        check_problem(c, in, o, records);
        if (o.add_zero_sparsity && !o.gating_only && !c.problem.zero_sparsity()) {
            CheckCase full = c;
            full.problem.topk = c.problem.max_blocks();
            phase(o, "zero-sparsity case (k = n)");
            check_problem(full, in, o, records);
        }
    } catch (const std::exception& e) {
        // The truth itself could not be computed (e.g. out of host or device memory).
        records.push_back(outcome_record(c, "reference", "reference", o.reference, Outcome::failed, e.what()));
    }
    return {records.begin(), records.end()};
}

}  // namespace moba
