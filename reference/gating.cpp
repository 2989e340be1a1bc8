// Gating (SEMANTICS.md §2) in float64, exhaustively: block means of k, unscaled dot64 scores
// against every past block, own block forced, the top k-1 past blocks by score (ties to the
// lower index), future blocks never. The yardstick of the filtered gating (gating_fast.cpp);
// also full_selection.
#include <algorithm>
#include <numeric>

#include "reference/common.hpp"
#include "reference/gating_rows.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"

namespace moba::ref {

using detail::Shape;

GatingResult gating_exhaustive(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    const detail::BlockMeans means = detail::block_means(shape, inputs);
    GatingResult result = detail::empty_gating_result(shape);
    parallel_for_ranges(shape.total, [&](std::int64_t begin, std::int64_t end) {
        detail::RankScratch scratch;
        for (std::int64_t t = begin; t < end; ++t) {
            const int s = shape.sequence_of(t);
            const int own = static_cast<int>((t - shape.cu[s]) / shape.block);
            // Past blocks taken besides the own one.
            const int taken = std::min(problem.topk - 1, own);
            for (int h = 0; h < shape.heads_q; ++h) {
                const detail::GatingRow row{inputs.q.data() + shape.q_row(t, h), t, h, s, own,
                                            taken};
                detail::exhaustive_row(shape, means, row, scratch, result);
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
