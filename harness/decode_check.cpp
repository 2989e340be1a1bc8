#include "harness/decode_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "harness/compare.hpp"
#include "harness/held_stream.hpp"
#include "harness/outcome.hpp"
#include "harness/records.hpp"
#include "reference/reference.hpp"

namespace moba {
namespace {

using nlohmann::json;

constexpr const char* kBaselineName = "cpu_baseline";


struct DecodeTruth {
    ref::DecodeResult f64;   // gating (selection, boundary data) and out, lse
    ForwardOutput baseline;  // the same-precision baseline of the rows, on f64's selection
    ref::RowInputs rows;     // the new tokens' rows (q_new, the caches) as the scorers read them
};

CheckRecord decode_record(const DecodeCase& c, const std::string& impl, const std::string& check,
                          const std::string& tensor, Outcome outcome, const std::string& reason) {
    CheckRecord r;
    r.config = c.base;
    r.impl = impl;
    r.check = check;
    r.tensor = tensor;
    r.reference = ReferenceKind::cpu;
    r.command = decode_reproduce_command(c, impl);
    r.outcome = outcome;
    r.reason = reason;
    r.decode = CheckRecord::Decode{c.q_lens, c.page_size};
    return r;
}

CheckRecord tensor_record(const DecodeCase& c, const std::string& impl, const std::string& check,
                          const TensorCheck& t) {
    CheckRecord r = decode_record(c, impl, check, t.tensor, t.outcome, t.reason);
    r.tensor_figures = t;
    return r;
}

// An entry that writes no lse (PyTorch's SDPA) has its lse record not supported, as in prefill.
void judge_forward(const DecodeCase& c, const Implementation& impl, const std::string& check,
                   const DeviceDecode::Result& got, const DecodeTruth& t, std::vector<CheckRecord>& records) {
    const Problem& p = c.base.problem;
    const Rows out_rows{static_cast<std::size_t>(p.head_dim), static_cast<std::size_t>(p.heads_q)};
    records.push_back(tensor_record(c, impl.name, check,
                                    compare_tensor("out", got.out, t.f64.forward.out, t.baseline.out, kForwardFactor,
                                                   tensor_atol(p.dtype), out_rows)));
    if (!impl.writes_lse) {
        records.push_back(decode_record(c, impl.name, check, "lse", Outcome::not_supported,
                                        impl.name + " returns no lse (its out is judged)"));
        return;
    }
    records.push_back(tensor_record(c, impl.name, check,
                                    compare_tensor("lse", got.lse, t.f64.forward.lse, t.baseline.lse, kForwardFactor,
                                                   kLseAtol)));
}

// decode_step: the gated step must attend exactly the selection it wrote. Bitwise, since both
// runs are the same deterministic attention over the same selection.
void judge_step(const DecodeCase& c, const std::string& impl, const DeviceDecode::Result& gated,
                const DeviceDecode::Result& replay, std::vector<CheckRecord>& records) {
    auto differing = [](const std::vector<float>& a, const std::vector<float>& b) {
        std::int64_t n = 0, first = -1;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && n++ == 0) first = static_cast<std::int64_t>(i);
        return std::pair{n, first};
    };
    for (const auto& [name, a, b] : {std::tuple{"out", &gated.out, &replay.out}, std::tuple{"lse", &gated.lse, &replay.lse}}) {
        const auto [n, first] = differing(*a, *b);
        records.push_back(decode_record(
            c, impl, "decode_step", name, n == 0 ? Outcome::passed : Outcome::incorrect,
            n == 0 ? ""
                   : fmt::format("the gated step's {} differs from attending the selection it wrote in {} of {} "
                                 "values (first at flat index {}): the step attends something other than its own "
                                 "selection",
                                 name, n, a->size(), first)));
    }
}

DecodeTruth decode_truth(const DecodeCase& c, const DecodeHostInputs& in) {
    DecodeTruth t;
    const ref::DecodeBatch b = c.batch();
    t.f64 = ref::decode_forward(b, in.q_new, in.k, in.v);
    t.rows.tokens = b.query_positions();
    t.rows.q_rows = in.q_new;
    t.rows.k = &in.k;
    t.rows.v = &in.v;
    t.rows.sel_rows = t.f64.gating.selection;
    t.baseline = ref::baseline_forward_rows(b.cache, t.rows);
    return t;
}

// Without a GPU: the baseline against float64, rel L2 <= 4 u (u the dtype's unit roundoff).
void judge_baseline(const DecodeCase& c, const std::string& check, const DecodeTruth& t,
                    std::vector<CheckRecord>& records) {
    const DType dtype = c.base.problem.dtype;
    const double u = dtype == DType::bf16 ? std::ldexp(1.0, -8) : dtype == DType::f16 ? std::ldexp(1.0, -11) : 2.5e-6;
    auto one = [&](const char* name, const std::vector<float>& base, const std::vector<double>& truth) {
        TensorCheck tc = compare_tensor(name, base, truth, base, 1.0, 0.0);
        tc.bound = 4 * u;
        tc.ratio = tc.rel_l2_err / tc.bound;
        if (tc.outcome == Outcome::passed && !(tc.rel_l2_err <= tc.bound)) {
            tc.outcome = Outcome::incorrect;
            tc.reason = fmt::format("baseline relative L2 error {:.3e} exceeds 4u = {:.3e}", tc.rel_l2_err, tc.bound);
        }
        CheckRecord r = tensor_record(c, kBaselineName, check, tc);
        r.bound_kind = "rel_l2 <= 4u";
        records.push_back(std::move(r));
    };
    one("out", t.baseline.out, t.f64.forward.out);
    one("lse", t.baseline.lse, t.f64.forward.lse);
}

void check_one(const DecodeCase& c, const Implementation& impl, const DecodeHostInputs& in, const DecodeTruth& t,
               const std::string& check, const CheckOptions& o, std::vector<CheckRecord>& records) {
    const Problem& p = c.base.problem;
    if (o.progress) o.progress(impl.name);
    try {
        DeviceDecode dev(impl, c, in);
        std::vector<std::string> stray;  // SEMANTICS.md §5: writes outside the outputs, changed inputs
        auto keep_stray = [&stray](const DeviceDecode::Result& r) -> const DeviceDecode::Result& {
            for (const std::string& s : r.stray_writes)
                if (std::find(stray.begin(), stray.end(), s) == stray.end()) stray.push_back(s);
            return r;
        };
        if (!impl.dense) {
            const DeviceDecode::Result gated = keep_stray(dev.run(true));
            CheckRecord g = decode_record(c, impl.name, "gating", "selection", Outcome::passed, "");
            g.gating_figures = compare_gating_rows(p, gated.sel, t.f64.gating, t.rows,
                                                   impl.block_means == BlockMeans::rounded);
            g.outcome = g.gating_figures->outcome;
            g.reason = g.gating_figures->reason;
            records.push_back(std::move(g));
            dev.set_selection(gated.sel);
            judge_step(c, impl.name, gated, keep_stray(dev.run(false)), records);
        }
        // The judged step runs on a held non-blocking stream (held_stream.hpp; for a MoBA decode
        // it is the third step on the same workspace): a step launched elsewhere comes back
        // poisoned, and its failing records say where it ran.
        dev.set_selection(t.f64.gating.selection);
        const std::size_t judged = records.size();
        judge_forward(c, impl, check, keep_stray(dev.run(false, /*held=*/true)), t, records);
        for (std::size_t i = judged; i < records.size(); ++i)
            if (is_failure(records[i].outcome))
                records[i].reason += fmt::format(" (this step ran on a non-blocking stream held {} ms behind a spinning "
                                                 "kernel: work launched on another stream than args.stream comes back "
                                                 "poisoned)",
                                                 kSecondCallHoldMs);
        for (const std::string& what : stray)
            records.push_back(decode_record(c, impl.name, "bounds", "", Outcome::incorrect, what));
    } catch (const std::exception& e) {
        records.push_back(decode_record(c, impl.name, check, "", Outcome::failed, e.what()));
    }
}

void check_pass(const DecodeCase& c, const DecodeHostInputs& in, const CheckOptions& o,
                std::vector<CheckRecord>& records) {
    const Problem& p = c.base.problem;
    const bool zero = p.zero_sparsity();
    const std::string check = zero ? "zero_sparsity" : "forward";
    std::vector<const Implementation*> impls;
    for (const Implementation* impl : o.gpu ? o.impls : std::vector<const Implementation*>{}) {
        Support s = impl->supports_decode(p, c.max_q_len());
        if (s.ok && impl->dense && !zero)
            s = Support::no("a dense decode attends every cached key; it is checked at zero sparsity (k >= n) only");
        if (!s.ok) {
            records.push_back(decode_record(c, impl->name, check, "", Outcome::not_supported, s.reason));
            continue;
        }
        impls.push_back(impl);
    }
    if (o.gpu && impls.empty()) return;
    if (o.progress) o.progress("float64 truth (CPU)");
    const DecodeTruth t = decode_truth(c, in);
    if (!o.gpu) return judge_baseline(c, check, t, records);
    for (const Implementation* impl : impls) check_one(c, *impl, in, t, check, o, records);
}

}  // namespace

std::vector<DecodeCase> decode_suite(std::uint64_t base_seed, const std::vector<InputFamily>& families) {
    if (families.empty()) throw std::invalid_argument("the decode suite needs at least one input family");
    struct Batch {
        std::vector<int> k_lens, q_lens;
        int block;
    };
    const Batch batches[] = {
        {{1, 300, 1024, 4097}, {1, 1, 1, 1}, 128},
        {{2048, 777}, {7, 64}, 64},
        {{513}, {513}, 64},
        {{16384}, {1}, 256},
    };
    const std::pair<int, int> layouts[] = {{4, 4}, {4, 2}, {4, 1}, {16, 2}};
    std::vector<DecodeCase> cases;
    for (const Batch& b : batches)
        for (const auto& [hq, hkv] : layouts)
            for (const int topk : {1, 3})
                for (const DType dtype : {DType::bf16, DType::f16}) {
                    const std::size_t i = cases.size();
                    DecodeCase c;
                    Problem& p = c.base.problem;
                    p.seqlens = b.k_lens;
                    p.heads_q = hq;
                    p.heads_kv = hkv;
                    p.head_dim = (i / 2) % 2 == 0 ? 128 : 64;
                    p.block = b.block;
                    p.topk = topk;
                    p.dtype = dtype;
                    c.base.seed = base_seed + i;
                    c.base.inputs = families[i % families.size()];
                    c.q_lens = b.q_lens;
                    c.page_size = (i / 4) % 2 == 0 ? 0 : 24;
                    cases.push_back(std::move(c));
                }
    return cases;
}

std::string decode_reproduce_command(const DecodeCase& c, const std::string& impl) {
    const CommandNaming naming = command_naming(impl);
    std::string cmd = fmt::format("{} check {}", naming.tool, c.flags());
    if (impl != kBaselineName) cmd += " " + naming.impl_flags;
    return cmd;
}

int expected_decode_phases(const DecodeCase& c, const CheckOptions& o) {
    auto pass = [&](const Problem& p) {
        int impls = 0;
        if (o.gpu)
            for (const Implementation* impl : o.impls)
                impls += impl->supports_decode(p, c.max_q_len()).ok && (!impl->dense || p.zero_sparsity());
        return 1 + impls;
    };
    int phases = 1 + pass(c.base.problem);
    if (o.add_zero_sparsity && !c.base.problem.zero_sparsity()) {
        Problem full = c.base.problem;
        full.topk = full.max_blocks();
        phases += pass(full);
    }
    return phases;
}

std::vector<json> run_decode_checks(const DecodeCase& c, const CheckOptions& o) {
    std::vector<CheckRecord> records;
    try {
        c.batch().validate();
        if (o.progress) o.progress("drawing inputs");
        const DecodeHostInputs in = make_decode_inputs(c);
        check_pass(c, in, o, records);
        if (o.add_zero_sparsity && !c.base.problem.zero_sparsity()) {
            DecodeCase full = c;
            full.base.problem.topk = c.base.problem.max_blocks();
            check_pass(full, in, o, records);
        }
    } catch (const std::exception& e) {
        records.push_back(decode_record(c, "reference", "reference", "", Outcome::failed, e.what()));
    }
    return {records.begin(), records.end()};
}

}  // namespace moba
