// The writers of the report's records: the config object and one to_json per record kind.
#include "harness/records.hpp"

#include <cmath>
#include <string_view>

namespace moba {
namespace {

using nlohmann::json;

std::string_view reference_name(ReferenceKind r) { return r == ReferenceKind::cpu ? "cpu" : "gpu"; }

// NaN and Inf are not JSON numbers: an error that could not be computed is written null.
json finite_or_null(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json optional_or_null(const auto& x) { return x ? json(*x) : json(nullptr); }

}  // namespace

json config_json(const CheckCase& s) {
    const Problem& p = s.problem;
    return {{"seqlens", p.seqlens},         {"heads_q", p.heads_q},
            {"heads_kv", p.heads_kv},       {"layout", head_layout(p.heads_q, p.heads_kv)},
            {"head_dim", p.head_dim},       {"block", p.block},
            {"topk", p.topk},               {"dtype", to_string(p.dtype)},
            {"scale", p.scale()},           {"seed", s.seed},
            {"inputs", to_string(s.inputs)},
            {"total_tokens", p.total_tokens()}, {"zero_sparsity", p.zero_sparsity()}};
}

void to_json(json& j, const CheckRecord& r) {
    j = {{"kind", "check"},       {"config", config_json(r.config)},
         {"impl", r.impl},        {"check", r.check},
         {"tensor", r.tensor},    {"reference", reference_name(r.reference)},
         {"command", r.command},  {"outcome", to_string(r.outcome)},
         {"reason", r.reason}};
    if (const auto& t = r.tensor_figures) {
        j["max_abs_err"] = finite_or_null(t->max_abs_err);
        j["rel_l2_err"] = finite_or_null(t->rel_l2_err);
        j["baseline_max_abs_err"] = finite_or_null(t->baseline_max_abs_err);
        j["baseline_rel_l2_err"] = finite_or_null(t->baseline_rel_l2_err);
        j["bound"] = finite_or_null(t->bound);
        j["ratio"] = finite_or_null(t->ratio);
        j["max_abs_ratio"] = finite_or_null(t->max_abs_ratio);
        j["region_ratio"] = finite_or_null(t->region_ratio);
        j["worst_region"] = t->worst_region;
        j["rel_l2_bound"] = finite_or_null(t->rel_l2_bound);
        j["rel_l2_ratio"] = finite_or_null(t->rel_l2_ratio);
        j["nonfinite"] = t->nonfinite;
    }
    if (const auto& g = r.gating_figures) {
        j["pairs"] = g->pairs;
        j["mismatches"] = g->mismatches;
        j["near_ties"] = g->near_ties;
        j["near_tie_mismatches"] = g->near_tie_mismatches;
        j["exact_ties"] = g->exact_ties;
        j["tie_violations"] = g->tie_violations;
        j["near_tie_fraction"] = g->pairs > 0 ? static_cast<double>(g->near_ties) / static_cast<double>(g->pairs) : 0.0;
        j["invalid"] = g->invalid;
    }
    if (!r.bound_kind.empty()) j["bound_kind"] = r.bound_kind;
    if (const auto& s = r.sanitizer_figures) {
        j["sanitizer"] = s->tool;
        j["sanitizer_problems"] = s->problems;
        j["sanitizer_exit_status"] = s->exit_status;
    }
}

void to_json(json& j, const BenchRecord& r) {
    j = {{"kind", "bench"},
         {"config", config_json(r.config)},
         {"impl", r.impl},
         {"dense", r.dense},
         {"phase", to_string(r.phase)},
         {"gating", r.gating},
         {"pairs", static_cast<std::int64_t>(r.pairs)},
         {"dense_pairs", static_cast<std::int64_t>(r.dense_pairs)},
         {"ideal_speedup", r.dense_pairs / r.pairs},
         {"flops", r.flops},
         {"gating_flops", r.gating_flops},
         {"dense_impl", optional_or_null(r.dense_impl)},
         {"speedup_vs_dense", optional_or_null(r.speedup_vs_dense)},
         {"check_outcome", to_string(r.check_outcome)},
         {"outcome", to_string(r.outcome)},
         {"reason", r.reason},
         {"command", r.command}};
    if (const auto& m = r.measured) {
        const ClockWindow& clock = m->timing.clock;
        j["check_worst_ratio"] = m->check_worst_ratio;
        j["timing"] = timing_json(m->timing);
        j["tflops"] = r.flops / (m->timing.median_ms * 1e-3) / 1e12;
        if (m->gating_ms) j["gating_ms"] = *m->gating_ms;
        j["peak_memory_bytes"] = m->peak_memory_bytes;
        j["sm_clock_start_mhz"] = clock.start_mhz;
        j["sm_clock_end_mhz"] = clock.end_mhz;
        j["throttle_reasons"] = clock.throttle_reasons;
        j["throttled"] = clock.throttled();
    }
    if (const auto& p = r.published)
        j["published"] = {{"figure", p->figure}, {"dense_ms", p->dense_ms}, {"moba_ms", p->moba_ms},
                          {"speedup", p->speedup}};
}

}  // namespace moba
