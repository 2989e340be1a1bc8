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

json gating_json(const GatingCheck& g) {
    return {{"pairs", g.pairs},
            {"mismatches", g.mismatches},
            {"near_ties", g.near_ties},
            {"near_tie_mismatches", g.near_tie_mismatches},
            {"exact_ties", g.exact_ties},
            {"tie_violations", g.tie_violations},
            {"near_tie_fraction", g.pairs > 0 ? static_cast<double>(g.near_ties) / static_cast<double>(g.pairs) : 0.0},
            {"invalid", g.invalid},
            {"block_means", g.rounded_means ? "rounded" : "exact"},
            {"rounding_mismatches", g.rounding_mismatches}};
}

json key_block_json(const KeyBlock& b) {
    return {{"seq", b.seq}, {"block", b.block}, {"attending_pairs", b.attending_pairs}, {"work", b.work}};
}

json backward_check_json(const BackwardCheckFigures& b) {
    json blocks = json::array();
    for (const KeyBlock& k : b.key_blocks) blocks.push_back(key_block_json(k));
    return {{"outcome", to_string(b.outcome)},
            {"worst_ratio", finite_or_null(b.worst_ratio)},
            {"query_rows", b.query_rows},
            {"key_rows", b.key_rows},
            {"attending_rows", b.attending_rows},
            {"key_blocks", blocks},
            {"blocks_total", b.blocks_total},
            {"blocks_over_budget", b.blocks_over_budget},
            {"most_attended", key_block_json(b.most_attended)},
            {"most_attended_checked", b.most_attended_checked},
            {"block_tails", b.block_tails},
            {"last_tokens_only", b.last_tokens_only},
            {"work_budget", b.work_budget}};
}

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
    if (const auto& g = r.gating_figures) j.update(gating_json(*g));
    if (!r.bound_kind.empty()) j["bound_kind"] = r.bound_kind;
    if (const auto& s = r.sanitizer_figures) {
        j["sanitizer"] = s->tool;
        j["sanitizer_problems"] = s->problems;
        j["sanitizer_exit_status"] = s->exit_status;
        if (!s->findings.empty()) j["sanitizer_findings"] = s->findings;
    }
    if (const auto& d = r.decode) j["decode"] = {{"q_lens", d->q_lens}, {"page_size", d->page_size}};
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
    if (!r.check_selection.empty()) {
        j["check_selection"] = r.check_selection;
        j["check_rows"] = r.check_rows;
    }
    if (const auto& g = r.gating_check) {
        json gj = gating_json(*g);
        gj["rows"] = r.config.problem.heads_q > 0 ? g->pairs / r.config.problem.heads_q : 0;
        gj["outcome"] = to_string(g->outcome);
        j["gating_check"] = std::move(gj);
    }
    if (const auto& b = r.backward_check) j["backward_check"] = backward_check_json(*b);
    if (const auto& m = r.measured) {
        const ClockWindow& clock = m->timing.clock;
        j["check_worst_ratio"] = m->check_worst_ratio;
        j["timing"] = timing_json(m->timing);
        j["tflops"] = r.flops / (m->timing.median_ms * 1e-3) / 1e12;
        if (m->gating_ms) j["gating_ms"] = *m->gating_ms;
        j["peak_memory_bytes"] = m->peak_memory_bytes;
        j["allocated_memory_bytes"] = m->allocated_memory_bytes;
        if (!m->memory_disturbed.empty()) j["memory_disturbed"] = m->memory_disturbed;
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
