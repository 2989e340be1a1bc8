#include "harness/compare.hpp"

#include "reference/rounding.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <memory>
#include <vector>

#include <fmt/format.h>

namespace moba {

double tensor_atol(DType dtype) {
    switch (dtype) {
        case DType::bf16: return std::ldexp(1.0, -9);
        case DType::f16: return std::ldexp(1.0, -12);
        case DType::f32: return std::ldexp(1.0, -25);
    }
    return 0.0;
}

TensorCheck compare_tensor(std::string tensor, std::span<const float> got,
                           std::span<const double> ref, std::span<const float> base,
                           double factor, double atol, Rows rows) {
    TensorCheck c;
    c.tensor = std::move(tensor);
    if (got.size() != ref.size() || base.size() != ref.size()) {
        c.outcome = Outcome::failed;
        c.reason = fmt::format("size mismatch: got {}, reference {}, baseline {}", got.size(),
                               ref.size(), base.size());
        return c;
    }
    double err2 = 0, ref2 = 0, base_err2 = 0;
    std::int64_t ref_nonfinite = 0, base_nonfinite = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double r = ref[i];
        if (!std::isfinite(r)) {
            ++ref_nonfinite;
            continue;
        }
        ref2 += r * r;
        const double b = base[i];
        if (!std::isfinite(b)) {
            ++base_nonfinite;
        } else {
            const double be = std::abs(b - r);
            c.baseline_max_abs_err = std::max(c.baseline_max_abs_err, be);
            base_err2 += be * be;
        }
        const double g = got[i];
        if (!std::isfinite(g)) {
            if (c.nonfinite == 0) c.worst_index = static_cast<std::int64_t>(i);
            ++c.nonfinite;
            continue;
        }
        const double e = std::abs(g - r);
        if (e > c.max_abs_err && c.nonfinite == 0) c.worst_index = static_cast<std::int64_t>(i);
        c.max_abs_err = std::max(c.max_abs_err, e);
        err2 += e * e;
    }
    const double ref_norm = std::sqrt(ref2);
    c.rel_l2_err = ref_norm > 0 ? std::sqrt(err2) / ref_norm : std::sqrt(err2);
    c.baseline_rel_l2_err = ref_norm > 0 ? std::sqrt(base_err2) / ref_norm : std::sqrt(base_err2);
    c.bound = factor * c.baseline_max_abs_err + atol;
    c.max_abs_ratio = c.bound > 0 ? c.max_abs_err / c.bound : std::numeric_limits<double>::infinity();
    // atol as an rms absolute error, in relative terms: the L2 rule then asks no more of a tensor
    // whose errors all sit at the rounding floor than the max rule does.
    const double ref_rms = ref.empty() ? 0.0 : ref_norm / std::sqrt(static_cast<double>(ref.size()));
    c.rel_l2_bound = factor * c.baseline_rel_l2_err + (ref_rms > 0 ? atol / ref_rms : atol);
    c.rel_l2_ratio = c.rel_l2_bound > 0 ? c.rel_l2_err / c.rel_l2_bound
                                        : std::numeric_limits<double>::infinity();
    if (rows.row_len > 0 && rows.heads > 0 && c.nonfinite == 0) {
        const std::size_t row_count = ref.size() / rows.row_len;
        const std::size_t tokens = row_count / rows.heads;
        const std::size_t tiles = (tokens + kRegionTokens - 1) / kRegionTokens;
        std::vector<double> err(tiles * rows.heads, 0.0), base_err(tiles * rows.heads, 0.0);
        for (std::size_t i = 0; i < row_count * rows.row_len; ++i) {
            const std::size_t row = i / rows.row_len;
            const std::size_t region = (row / rows.heads / kRegionTokens) * rows.heads + row % rows.heads;
            err[region] = std::max(err[region], std::abs(static_cast<double>(got[i]) - ref[i]));
            base_err[region] = std::max(base_err[region], std::abs(static_cast<double>(base[i]) - ref[i]));
        }
        for (std::size_t region = 0; region < err.size(); ++region) {
            const double ratio = err[region] / (factor * base_err[region] + atol);
            if (ratio > c.region_ratio) {
                c.region_ratio = ratio;
                c.worst_region = static_cast<std::int64_t>(region);
            }
        }
    }
    c.ratio = std::max({c.max_abs_ratio, rows.judged ? c.region_ratio : 0.0, c.rel_l2_ratio});

    if (ref_nonfinite > 0 || base_nonfinite > 0) {
        c.outcome = Outcome::failed;
        c.reason = fmt::format("the reference has {} and the baseline {} non-finite values",
                               ref_nonfinite, base_nonfinite);
    } else if (c.nonfinite > 0) {
        c.outcome = Outcome::failed;
        c.reason = fmt::format("{} NaN/Inf values (first at flat index {}); unwritten outputs "
                               "are poisoned with NaN",
                               c.nonfinite, c.worst_index);
    } else if (!(c.max_abs_err <= c.bound)) {
        c.outcome = Outcome::incorrect;
        c.reason = fmt::format("max error {:.3e} at flat index {} exceeds the bound {:.3e}",
                               c.max_abs_err, c.worst_index, c.bound);
    } else if (rows.judged && c.region_ratio > 1.0) {
        const auto heads = static_cast<std::int64_t>(rows.heads);
        const std::int64_t first = c.worst_region / heads * static_cast<std::int64_t>(kRegionTokens);
        c.outcome = Outcome::incorrect;
        c.reason = fmt::format("tokens {}..{} of head {} are {:.2f}x their own bound ({} x the "
                               "baseline's error there + atol)",
                               first, first + static_cast<std::int64_t>(kRegionTokens) - 1,
                               c.worst_region % heads, c.region_ratio, factor);
    } else if (!(c.rel_l2_err <= c.rel_l2_bound)) {
        c.outcome = Outcome::incorrect;
        c.reason = fmt::format("relative L2 error {:.3e} exceeds its bound {:.3e} ({} x the "
                               "baseline's {:.3e} + atol / rms)",
                               c.rel_l2_err, c.rel_l2_bound, factor, c.baseline_rel_l2_err);
    }
    return c;
}

double gating_score_error(const Problem& problem, double magnitude, double abs_score) {
    constexpr double kLambda = 8.0;
    const double u = std::ldexp(1.0, -24);
    const double rho = problem.dtype == DType::bf16  ? std::ldexp(1.0, -16)
                       : problem.dtype == DType::f16 ? std::ldexp(1.0, -22)
                                                     : u;
    return kLambda * u *
               (std::sqrt(static_cast<double>(problem.block)) * magnitude +
                std::sqrt(static_cast<double>(problem.head_dim)) * abs_score) +
           rho * abs_score;
}

double gating_margin(const Problem& problem, double boundary_magnitude, double boundary_abs_score) {
    return 2.0 * gating_score_error(problem, boundary_magnitude, boundary_abs_score);
}

namespace {

// Structural validity of one pair's slots: ascending distinct in-range past-or-own blocks,
// own block present, -1 only as trailing padding, exactly min(topk, own+1) entries.
bool valid_slots(const std::int32_t* s, int slots, int own_block, int topk) {
    int count = 0;
    bool padding = false, has_own = false;
    int prev = -1;
    for (int t = 0; t < slots; ++t) {
        const int b = s[t];
        if (b == -1) {
            padding = true;
            continue;
        }
        if (padding || b < 0 || b > own_block || b <= prev) return false;
        has_own = has_own || b == own_block;
        prev = b;
        ++count;
    }
    return has_own && count == std::min(topk, own_block + 1);
}

}  // namespace

namespace {

// The official code's score of a block (SPEC.md §2.7): q . kbar with kbar, the mean of the
// block's keys, rounded to the dtype; the product in float64. k [total, Hkv, D], `first` the
// packed index of the block's first token.
double rounded_mean_score(const Problem& p, const std::vector<float>& k, std::int64_t first, int kv_head,
                          const float* q_row) {
    double score = 0;
    for (int d = 0; d < p.head_dim; ++d) {
        double sum = 0;
        for (int t = 0; t < p.block; ++t)
            sum += k[static_cast<std::size_t>(((first + t) * p.heads_kv + kv_head) * p.head_dim + d)];
        const float mean = ref::round_to(p.dtype, static_cast<float>(sum / p.block));
        score += static_cast<double>(q_row[d]) * mean;
    }
    return score;
}

// Judges one (query token, head) pair: counts its reference tie class and whether its set
// differs beyond near-tie swaps. `score(block)` gives the pair's float64 score of a block;
// `rounded(block)`, used only when c.rounded_means, its score with the block mean rounded.
template <class Score, class Rounded>
void judge_pair(const Problem& problem, const std::int32_t* g, const std::int32_t* w, int own,
                double gap, double magnitude, double abs_score, std::int64_t pair, Score&& score,
                Rounded&& rounded, GatingCheck& c) {
    const int slots = problem.sel_slots();
    ++c.pairs;
    if (gap == 0.0) {
        ++c.exact_ties;
    } else if (std::isfinite(gap) && gap <= gating_margin(problem, magnitude, abs_score)) {
        ++c.near_ties;
    }
    if (!valid_slots(g, slots, own, problem.topk)) {
        ++c.invalid;
        if (c.first_bad_pair < 0) c.first_bad_pair = pair;
        return;
    }
    if (std::equal(g, g + slots, w)) return;
    // The blocks it took that the reference did not, and the reverse (both sorted, the same
    // count since both rows are valid).
    std::vector<std::int32_t> took, missed;
    std::set_difference(g, g + slots, w, w + slots, std::back_inserter(took));
    std::set_difference(w, w + slots, g, g + slots, std::back_inserter(missed));
    bool excused = true, tie_broken = false;
    for (std::int32_t a : took) {
        if (a < 0) continue;
        const ref::BlockScore sa = score(a);
        for (std::int32_t r : missed) {
            if (r < 0) continue;
            const ref::BlockScore sr = score(r);
            const double below = sr.score - sa.score;
            if (below == 0.0) tie_broken = true;
            if (!(below > 0.0 &&
                  below <= gating_score_error(problem, sa.magnitude, sa.abs_score) +
                               gating_score_error(problem, sr.magnitude, sr.abs_score)))
                excused = false;
        }
    }
    bool rounding = false;
    if (!excused && c.rounded_means) {
        rounding = true;
        for (std::int32_t a : took)
            for (std::int32_t r : missed) {
                if (a < 0 || r < 0) continue;
                const ref::BlockScore sa = score(a), sr = score(r);
                const double below = rounded(r) - rounded(a);
                if (below > gating_score_error(problem, sa.magnitude, sa.abs_score) +
                                gating_score_error(problem, sr.magnitude, sr.abs_score))
                    rounding = false;
            }
    }
    if (excused) {
        ++c.near_tie_mismatches;
    } else if (rounding) {
        ++c.rounding_mismatches;
    } else {
        ++c.mismatches;
        c.tie_violations += tie_broken;
        if (c.first_bad_pair < 0) c.first_bad_pair = pair;
    }
}

// The outcome and reason from the counts; `token_of(pair)` names the pair's token.
template <class TokenOf>
void finish_gating(const Problem& problem, GatingCheck& c, TokenOf&& token_of) {
    const std::int64_t token = c.first_bad_pair < 0 ? -1 : token_of(c.first_bad_pair);
    const std::int64_t head = c.first_bad_pair < 0 ? -1 : c.first_bad_pair % problem.heads_q;
    if (c.invalid > 0) {
        c.outcome = Outcome::incorrect;
        c.reason = fmt::format("{} pairs have an invalid block list (first: token {}, head {})",
                               c.invalid, token, head);
    } else if (c.mismatches > 0) {
        c.outcome = Outcome::incorrect;
        c.reason = fmt::format("{} of {} pairs select other blocks than the reference beyond "
                               "near-tie swaps ({} of them exact ties given to the higher index; "
                               "first: token {}, head {})",
                               c.mismatches, c.pairs, c.tie_violations, token, head);
    }
}

GatingCheck shape_mismatch(const Problem& problem, const Selection& got, const Selection& want,
                           std::size_t rows) {
    GatingCheck c;
    const std::size_t entries = rows * static_cast<std::size_t>(problem.heads_q * problem.sel_slots());
    if (got.slots == problem.sel_slots() && want.slots == problem.sel_slots() &&
        got.blocks.size() == entries && want.blocks.size() == entries)
        return c;
    c.outcome = Outcome::failed;
    c.reason = fmt::format("selection shape mismatch: got {} slots x {} entries, reference "
                           "{} slots x {} entries, {} expected",
                           got.slots, got.blocks.size(), want.slots, want.blocks.size(), entries);
    return c;
}

}  // namespace

GatingCheck compare_gating(const Problem& problem, const Selection& got,
                           const ref::GatingResult& ref, const HostInputs& inputs, bool rounded_means) {
    GatingCheck c = shape_mismatch(problem, got, ref.selection,
                                   static_cast<std::size_t>(problem.total_tokens()));
    c.rounded_means = rounded_means;
    if (c.outcome != Outcome::passed) return c;
    const int slots = problem.sel_slots();
    std::unique_ptr<ref::BlockScorer> scorer;  // built at the first differing pair
    const auto cu = problem.cu_seqlens();
    for (int b = 0; b < problem.batch(); ++b) {
        for (std::int64_t t = cu[b]; t < cu[b + 1]; ++t) {
            const int own = static_cast<int>((t - cu[b]) / problem.block);
            for (int h = 0; h < problem.heads_q; ++h) {
                const std::int64_t pair = t * problem.heads_q + h;
                auto score = [&](std::int32_t block) {
                    if (!scorer) scorer = std::make_unique<ref::BlockScorer>(problem, inputs);
                    return scorer->score(t, h, block);
                };
                auto rounded = [&](std::int32_t block) {
                    return rounded_mean_score(problem, inputs.k, cu[b] + static_cast<std::int64_t>(block) * problem.block,
                                              h / problem.group(),
                                              inputs.q.data() + pair * problem.head_dim);
                };
                judge_pair(problem, got.blocks.data() + pair * slots,
                           ref.selection.blocks.data() + pair * slots, own, ref.boundary_gap[pair],
                           ref.boundary_magnitude[pair], ref.boundary_abs_score[pair], pair, score, rounded, c);
            }
        }
    }
    finish_gating(problem, c, [&](std::int64_t pair) { return pair / problem.heads_q; });
    return c;
}

GatingCheck compare_gating_rows(const Problem& problem, const Selection& got,
                                const ref::GatingResult& ref, const ref::RowInputs& rows, bool rounded_means) {
    GatingCheck c = shape_mismatch(problem, got, ref.selection, rows.tokens.size());
    c.rounded_means = rounded_means;
    if (c.outcome != Outcome::passed) return c;
    const int slots = problem.sel_slots();
    std::unique_ptr<ref::BlockScorer> scorer;  // built at the first differing pair
    const auto cu = problem.cu_seqlens();
    for (std::size_t r = 0; r < rows.tokens.size(); ++r) {
        const std::int64_t t = rows.tokens[r];
        const auto seq = std::upper_bound(cu.begin(), cu.end(), t) - cu.begin() - 1;
        const int own = static_cast<int>((t - cu[static_cast<std::size_t>(seq)]) / problem.block);
        for (int h = 0; h < problem.heads_q; ++h) {
            const auto pair = static_cast<std::int64_t>(r) * problem.heads_q + h;
            auto score = [&](std::int32_t block) {
                if (!scorer) scorer = std::make_unique<ref::BlockScorer>(problem, *rows.k);
                return scorer->score(rows.q_rows.data() + pair * problem.head_dim, t, h, block);
            };
            auto rounded = [&](std::int32_t block) {
                return rounded_mean_score(problem, *rows.k,
                                          cu[static_cast<std::size_t>(seq)] + static_cast<std::int64_t>(block) * problem.block,
                                          h / problem.group(), rows.q_rows.data() + pair * problem.head_dim);
            };
            judge_pair(problem, got.blocks.data() + pair * slots,
                       ref.selection.blocks.data() + pair * slots, own, ref.boundary_gap[pair],
                       ref.boundary_magnitude[pair], ref.boundary_abs_score[pair], pair, score, rounded, c);
        }
    }
    finish_gating(problem, c, [&](std::int64_t pair) { return rows.tokens[static_cast<std::size_t>(pair / problem.heads_q)]; });
    return c;
}

}  // namespace moba
