// Gating (SEMANTICS.md §2) in float64: block means of k, unscaled scores against them, own block
// forced, the top k-1 past blocks by score (ties to the lower index), future blocks never.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "reference/common.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"

namespace moba::ref {

using detail::Shape;

GatingResult gating(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    const int dim = shape.dim;
    const int hkv = shape.heads_kv;

    // Blocks of all sequences numbered globally: sequence s owns [first[s], first[s + 1]).
    std::vector<std::int64_t> first(shape.batch() + 1, 0);
    for (int s = 0; s < shape.batch(); ++s) {
        first[s + 1] = first[s] + (problem.seqlens[s] + shape.block - 1) / shape.block;
    }
    // kbar = mean of k over the block's tokens, kabs = mean of |k|: [blocks, Hkv, D].
    std::vector<double> kbar(first.back() * hkv * dim);
    std::vector<double> kabs(kbar.size());
    parallel_for(first.back() * hkv, [&](std::int64_t index) {
        const std::int64_t global = index / hkv;
        const int hk = static_cast<int>(index % hkv);
        const int s =
            static_cast<int>(std::upper_bound(first.begin(), first.end(), global) - first.begin()) -
            1;
        const std::int64_t t0 = shape.cu[s] + (global - first[s]) * shape.block;
        const std::int64_t t1 = std::min<std::int64_t>(t0 + shape.block, shape.cu[s + 1]);
        double* mean = kbar.data() + index * dim;
        double* mean_abs = kabs.data() + index * dim;
        for (std::int64_t t = t0; t < t1; ++t) {
            const float* k = inputs.k.data() + shape.kv_row(t, hk);
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

    constexpr double kInf = std::numeric_limits<double>::infinity();
    GatingResult result;
    result.selection.slots = shape.slots;
    result.selection.blocks.assign(shape.total * shape.heads_q * shape.slots, -1);
    result.boundary_gap.assign(shape.total * shape.heads_q, kInf);
    result.boundary_magnitude.assign(shape.total * shape.heads_q, 0.0);

    parallel_for_ranges(shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> score;  // per past block
        std::vector<int> order;     // past blocks, best first
        for (std::int64_t t = begin; t < end; ++t) {
            const int s = shape.sequence_of(t);
            const int own = static_cast<int>((t - shape.cu[s]) / shape.block);
            // Past blocks taken besides the own one.
            const int taken = std::min(problem.topk - 1, own);
            for (int h = 0; h < shape.heads_q; ++h) {
                const int hk = h / shape.group;
                const float* q = inputs.q.data() + shape.q_row(t, h);
                auto block_row = [&](int j) { return ((first[s] + j) * hkv + hk) * dim; };
                score.resize(own);
                for (int j = 0; j < own; ++j) {
                    score[j] = detail::dot64(q, kbar.data() + block_row(j), dim);
                }
                order.resize(own);
                std::iota(order.begin(), order.end(), 0);
                // Ranked up to the best unselected one; equal scores: lower block index first.
                const int ranked = std::min(taken + 1, own);
                std::partial_sort(order.begin(), order.begin() + ranked, order.end(),
                                  [&](int a, int b) {
                                      return score[a] > score[b] || (score[a] == score[b] && a < b);
                                  });
                std::int32_t* row = result.selection.blocks.data() + shape.sel_row(t, h);
                std::copy(order.begin(), order.begin() + taken, row);
                row[taken] = own;
                std::sort(row, row + taken);

                if (taken >= 1 && taken < own) {
                    const int weakest = order[taken - 1];
                    const int rival = order[taken];
                    const std::int64_t pair = t * shape.heads_q + h;
                    result.boundary_gap[pair] = score[weakest] - score[rival];
                    auto magnitude = [&](int j) {
                        double m = 0.0;
                        for (int d = 0; d < dim; ++d) m += std::fabs(q[d]) * kabs[block_row(j) + d];
                        return m;
                    };
                    result.boundary_magnitude[pair] =
                        std::max(magnitude(weakest), magnitude(rival));
                }
            }
        }
    });
    return result;
}

Selection full_selection(const Problem& problem) {
    problem.validate();
    if (!problem.zero_sparsity()) {
        throw std::invalid_argument("full_selection needs topk >= the block count (topk " +
                                    std::to_string(problem.topk) + ", blocks " +
                                    std::to_string(problem.max_blocks()) + ")");
    }
    const Shape shape(problem);
    Selection sel;
    sel.slots = shape.slots;
    sel.blocks.assign(shape.total * shape.heads_q * shape.slots, -1);
    for (int s = 0; s < shape.batch(); ++s) {
        for (std::int64_t t = shape.cu[s]; t < shape.cu[s + 1]; ++t) {
            const int own = static_cast<int>((t - shape.cu[s]) / shape.block);
            for (int h = 0; h < shape.heads_q; ++h) {
                std::int32_t* row = sel.blocks.data() + shape.sel_row(t, h);
                std::iota(row, row + own + 1, 0);
            }
        }
    }
    return sel;
}

}  // namespace moba::ref
