// Block means and the ranking of one gating row (SEMANTICS.md §2), shared by the exhaustive
// and the filtered float64 gating so that the two cannot drift apart.
#include "reference/gating_rows.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "reference/parallel.hpp"

namespace moba::ref::detail {

BlockMeans block_means(const Shape& shape, const HostInputs& inputs) {
    return block_means(shape, inputs.k);
}

BlockMeans block_means(const Shape& shape, const std::vector<float>& k_all) {
    BlockMeans means;
    means.heads_kv = shape.heads_kv;
    means.dim = shape.dim;
    const int dim = shape.dim;
    const int hkv = shape.heads_kv;
    means.first.assign(shape.batch() + 1, 0);
    for (int s = 0; s < shape.batch(); ++s) {
        const std::int64_t len = shape.cu[s + 1] - shape.cu[s];
        means.first[s + 1] = means.first[s] + (len + shape.block - 1) / shape.block;
    }
    const std::vector<std::int64_t>& first = means.first;
    means.kbar.assign(means.blocks() * hkv * dim, 0.0);
    means.kabs.assign(means.kbar.size(), 0.0);
    parallel_for(means.blocks() * hkv, [&](std::int64_t index) {
        const std::int64_t global = index / hkv;
        const int hk = static_cast<int>(index % hkv);
        const int s =
            static_cast<int>(std::upper_bound(first.begin(), first.end(), global) - first.begin()) -
            1;
        const std::int64_t t0 = shape.cu[s] + (global - first[s]) * shape.block;
        const std::int64_t t1 = std::min<std::int64_t>(t0 + shape.block, shape.cu[s + 1]);
        double* mean = means.kbar.data() + index * dim;
        double* mean_abs = means.kabs.data() + index * dim;
        for (std::int64_t t = t0; t < t1; ++t) {
            const float* k = k_all.data() + shape.kv_row(t, hk);
            for (int d = 0; d < dim; ++d) {
                mean[d] += k[d];
                mean_abs[d] += std::fabs(k[d]);
            }
        }
        const double count = static_cast<double>(t1 - t0);
        for (int d = 0; d < dim; ++d) {
            mean[d] /= count;
            mean_abs[d] /= count;
        }
    });
    return means;
}

GatingResult empty_gating_result(const Shape& shape) {
    GatingResult result;
    result.selection.slots = shape.slots;
    result.selection.blocks.assign(shape.total * shape.heads_q * shape.slots, -1);
    result.boundary_gap.assign(shape.total * shape.heads_q,
                               std::numeric_limits<double>::infinity());
    result.boundary_magnitude.assign(shape.total * shape.heads_q, 0.0);
    result.boundary_abs_score.assign(shape.total * shape.heads_q, 0.0);
    return result;
}

void rank_row(const Shape& shape, const BlockMeans& means, const GatingRow& row,
              RankScratch& scratch, GatingResult& result) {
    const int count = static_cast<int>(scratch.blocks.size());
    const std::int32_t* blocks = scratch.blocks.data();
    const double* score = scratch.score.data();
    std::vector<int>& order = scratch.order;  // candidate positions, best first
    order.resize(count);
    std::iota(order.begin(), order.end(), 0);
    // Ranked up to the best unselected one; equal scores: lower block index first (the
    // candidates ascend, so a lower position is a lower block index).
    const int ranked = std::min(row.taken + 1, count);
    std::partial_sort(order.begin(), order.begin() + ranked, order.end(), [&](int a, int b) {
        return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
    std::int32_t* sel = result.selection.blocks.data() + shape.sel_row(row.t, row.h);
    for (int i = 0; i < row.taken; ++i) sel[i] = blocks[order[i]];
    sel[row.taken] = row.own;
    std::sort(sel, sel + row.taken);

    if (row.taken >= 1 && row.taken < row.own) {
        const int weakest = order[row.taken - 1];
        const int rival = order[row.taken];
        const std::int64_t pair = row.t * shape.heads_q + row.h;
        result.boundary_gap[pair] = score[weakest] - score[rival];
        const int hk = row.h / shape.group;
        auto magnitude = [&](int position) {
            const double* kabs = means.kabs.data() + means.row(row.s, blocks[position], hk);
            double m = 0.0;
            for (int d = 0; d < shape.dim; ++d) m += std::fabs(row.q[d]) * kabs[d];
            return m;
        };
        result.boundary_magnitude[pair] = std::max(magnitude(weakest), magnitude(rival));
        auto abs_score = [&](int position) {
            const double* kbar = means.kbar.data() + means.row(row.s, blocks[position], hk);
            double m = 0.0;
            for (int d = 0; d < shape.dim; ++d) m += std::fabs(row.q[d] * kbar[d]);
            return m;
        };
        result.boundary_abs_score[pair] = std::max(abs_score(weakest), abs_score(rival));
    }
}

void exhaustive_row(const Shape& shape, const BlockMeans& means, const GatingRow& row,
                    RankScratch& scratch, GatingResult& result) {
    const int hk = row.h / shape.group;
    scratch.blocks.resize(row.own);
    scratch.score.resize(row.own);
    for (int j = 0; j < row.own; ++j) {
        scratch.blocks[j] = j;
        scratch.score[j] = dot64(row.q, means.kbar.data() + means.row(row.s, j, hk), shape.dim);
    }
    rank_row(shape, means, row, scratch, result);
}

}  // namespace moba::ref::detail

namespace moba::ref {

struct BlockScorer::State {
    detail::Shape shape;
    detail::BlockMeans means;
    const HostInputs* inputs;  // null when made from k alone
};

BlockScorer::BlockScorer(const Problem& problem, const HostInputs& inputs)
    : state_(new State{detail::Shape(problem), {}, &inputs}) {
    detail::check_inputs(problem, inputs, false);
    state_->means = detail::block_means(state_->shape, inputs);
}

BlockScorer::BlockScorer(const Problem& problem, const std::vector<float>& k)
    : state_(new State{detail::Shape(problem), {}, nullptr}) {
    problem.validate();
    detail::check_size("k", k.size(), problem.kv_elems());
    state_->means = detail::block_means(state_->shape, k);
}

BlockScorer::~BlockScorer() { delete state_; }

BlockScore BlockScorer::score(std::int64_t token, int head, int block) const {
    if (state_->inputs == nullptr) {
        throw std::logic_error("BlockScorer made from k alone: pass the query row");
    }
    return score(state_->inputs->q.data() + state_->shape.q_row(token, head), token, head, block);
}

BlockScore BlockScorer::score(const float* q, std::int64_t token, int head, int block) const {
    const detail::Shape& shape = state_->shape;
    const int s = shape.sequence_of(token);
    const int hk = head / shape.group;
    const double* kbar = state_->means.kbar.data() + state_->means.row(s, block, hk);
    const double* kabs = state_->means.kabs.data() + state_->means.row(s, block, hk);
    BlockScore b;
    b.score = detail::dot64(q, kbar, shape.dim);
    for (int d = 0; d < shape.dim; ++d) {
        b.magnitude += std::fabs(q[d]) * kabs[d];
        b.abs_score += std::fabs(q[d] * kbar[d]);
    }
    return b;
}

GatingResult gating_rows(const Problem& problem, const RowInputs& rows) {
    problem.validate();
    const detail::Shape shape(problem);
    const auto count = static_cast<std::int64_t>(rows.tokens.size());
    detail::check_size("q_rows", rows.q_rows.size(), count * shape.heads_q * shape.dim);
    if (rows.k == nullptr) throw std::invalid_argument("row inputs lack k (null pointer)");
    detail::check_size("k", rows.k->size(), problem.kv_elems());
    for (std::int64_t r = 0; r < count; ++r) {
        if (rows.tokens[r] < 0 || rows.tokens[r] >= shape.total) {
            throw std::invalid_argument("row " + std::to_string(r) + " names token " +
                                        std::to_string(rows.tokens[r]) + ", the problem has " +
                                        std::to_string(shape.total) + " tokens");
        }
    }
    const detail::BlockMeans means = detail::block_means(shape, *rows.k);
    GatingResult result;
    result.selection.slots = shape.slots;
    result.selection.blocks.assign(count * shape.heads_q * shape.slots, -1);
    result.boundary_gap.assign(count * shape.heads_q, std::numeric_limits<double>::infinity());
    result.boundary_magnitude.assign(count * shape.heads_q, 0.0);
    result.boundary_abs_score.assign(count * shape.heads_q, 0.0);
    // Row r stands where gating's token would: rank_row writes by (row.t, row.h) only.
    parallel_for_ranges(count * shape.heads_q, [&](std::int64_t begin, std::int64_t end) {
        detail::RankScratch scratch;
        for (std::int64_t index = begin; index < end; ++index) {
            const std::int64_t r = index / shape.heads_q;
            const int h = static_cast<int>(index % shape.heads_q);
            const std::int64_t t = rows.tokens[r];
            const int s = shape.sequence_of(t);
            const int own = static_cast<int>((t - shape.cu[s]) / shape.block);
            const detail::GatingRow row{rows.q_rows.data() + (r * shape.heads_q + h) * shape.dim,
                                        r, h, s, own, std::min(problem.topk - 1, own)};
            detail::exhaustive_row(shape, means, row, scratch, result);
        }
    });
    return result;
}

}  // namespace moba::ref
