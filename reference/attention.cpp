// Attention given a selection (SEMANTICS.md §3) in float64. Key j of the query's sequence is
// attended by (i, h) when j <= i and block j / Bs is in the selection of (i, h).
//
// Forward and the dq half of backward run per query row (token, head); dk and dv run per
// tile of keys of one kv head, looping over every query head of its group, so each thread
// owns disjoint outputs and the sums have a fixed order.
#include <algorithm>
#include <cmath>

#include "reference/common.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"

namespace moba::ref {

using detail::axpy64;
using detail::dot64;
using detail::Shape;

namespace {

constexpr int kKeyTile = 16;  // keys per dk/dv work item

struct RowSoftmax {
    double max;
    double sum;
};

// s[0..n) -> exp(s - max) in place; returns (max, sum of the exponentials).
RowSoftmax softmax_in_place(double* s, std::size_t n) {
    double max = -HUGE_VAL;
    for (std::size_t m = 0; m < n; ++m) max = std::max(max, s[m]);
    double sum = 0.0;
    for (std::size_t m = 0; m < n; ++m) {
        s[m] = std::exp(s[m] - max);
        sum += s[m];
    }
    return {max, sum};
}

}  // namespace

Forward attention_forward(const Problem& problem, const HostInputs& inputs, const Selection& sel) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    detail::check_selection(shape, sel);
    const detail::HeadMajorInputs x(shape, inputs, false);
    const int dim = shape.dim;
    Forward fwd;
    fwd.out.resize(problem.q_elems());
    fwd.lse.resize(problem.lse_elems());
    // Row r = h * total + t: neighbouring rows share a head and so their keys.
    parallel_for_ranges(shape.heads_q * shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> p(problem.max_seqlen());
        for (std::int64_t r = begin; r < end; ++r) {
            const int h = static_cast<int>(r / shape.total);
            const int hk = h / shape.group;
            const std::int64_t t = r % shape.total;
            const std::int64_t start = shape.cu[shape.sequence_of(t)];
            const std::int32_t* sel_row = sel.blocks.data() + shape.sel_row(t, h);
            const float* q = x.q.row(t, h);
            std::size_t n = 0;
            detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
                p[n++] = shape.scale * dot64(q, x.k.row(start + j, hk), dim);
            });
            const RowSoftmax row = softmax_in_place(p.data(), n);
            double* out = fwd.out.data() + shape.q_row(t, h);
            n = 0;
            detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
                axpy64(out, p[n++], x.v.row(start + j, hk), dim);
            });
            for (int d = 0; d < dim; ++d) out[d] /= row.sum;
            fwd.lse[shape.lse_index(t, h)] = row.max + std::log(row.sum);
        }
    });
    return fwd;
}

Gradients attention_backward(const Problem& problem, const HostInputs& inputs,
                             const Selection& sel) {
    detail::check_inputs(problem, inputs, true);
    const Shape shape(problem);
    detail::check_selection(shape, sel);
    const detail::HeadMajorInputs x(shape, inputs, true);
    const int dim = shape.dim;
    Gradients grads;
    grads.dq.resize(problem.q_elems());
    grads.dk.resize(problem.kv_elems());
    grads.dv.resize(problem.kv_elems());

    // Per query row: P again, dP_ij = dout_i . v_j, Delta_i = sum_j P_ij dP_ij (= dout_i . out_i),
    // then dq_i = scale * sum_j P_ij (dP_ij - Delta_i) k_j.
    std::vector<double> lse(problem.lse_elems());    // [Hq, total]
    std::vector<double> delta(problem.lse_elems());  // [Hq, total]
    parallel_for_ranges(shape.heads_q * shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> p(problem.max_seqlen());
        std::vector<double> dp(problem.max_seqlen());
        for (std::int64_t r = begin; r < end; ++r) {
            const int h = static_cast<int>(r / shape.total);
            const int hk = h / shape.group;
            const std::int64_t t = r % shape.total;
            const std::int64_t start = shape.cu[shape.sequence_of(t)];
            const std::int32_t* sel_row = sel.blocks.data() + shape.sel_row(t, h);
            const float* q = x.q.row(t, h);
            const float* dout = x.dout.row(t, h);
            std::size_t n = 0;
            detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
                p[n] = shape.scale * dot64(q, x.k.row(start + j, hk), dim);
                dp[n++] = dot64(dout, x.v.row(start + j, hk), dim);
            });
            const RowSoftmax row = softmax_in_place(p.data(), n);
            double row_delta = 0.0;
            for (std::size_t m = 0; m < n; ++m) row_delta += p[m] / row.sum * dp[m];
            double* dq = grads.dq.data() + shape.q_row(t, h);
            n = 0;
            detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
                const double ds = p[n] / row.sum * (dp[n] - row_delta);
                ++n;
                axpy64(dq, shape.scale * ds, x.k.row(start + j, hk), dim);
            });
            lse[shape.lse_index(t, h)] = row.max + std::log(row.sum);
            delta[shape.lse_index(t, h)] = row_delta;
        }
    });

    // Per tile of keys (one sequence, one kv head, inside one block): every query head of
    // the group and every later query whose selection holds the block.
    const std::vector<detail::KeyTile> tiles = detail::key_tiles(shape, kKeyTile);
    parallel_for_ranges(static_cast<std::int64_t>(tiles.size()), [&](std::int64_t begin,
                                                                     std::int64_t end) {
        std::vector<double> dk(kKeyTile * dim);
        std::vector<double> dv(kKeyTile * dim);
        for (std::int64_t index = begin; index < end; ++index) {
            const detail::KeyTile& tile = tiles[index];
            const std::int64_t start = shape.cu[tile.seq];
            const std::int64_t len = shape.cu[tile.seq + 1] - start;
            const auto block = static_cast<std::int32_t>(tile.j0 / shape.block);
            std::fill(dk.begin(), dk.end(), 0.0);
            std::fill(dv.begin(), dv.end(), 0.0);
            for (int h = tile.head_kv * shape.group; h < (tile.head_kv + 1) * shape.group; ++h) {
                for (std::int64_t i = tile.j0; i < len; ++i) {
                    const std::int64_t t = start + i;
                    if (!detail::selects(sel.blocks.data() + shape.sel_row(t, h), shape.slots,
                                         block)) {
                        continue;
                    }
                    const float* q = x.q.row(t, h);
                    const float* dout = x.dout.row(t, h);
                    const double row_lse = lse[shape.lse_index(t, h)];
                    const double row_delta = delta[shape.lse_index(t, h)];
                    for (std::int64_t j = tile.j0; j < std::min(tile.j1, i + 1); ++j) {
                        const double prob =
                            std::exp(shape.scale * dot64(q, x.k.row(start + j, tile.head_kv), dim) -
                                     row_lse);
                        const double ds =
                            prob * (dot64(dout, x.v.row(start + j, tile.head_kv), dim) - row_delta);
                        const std::int64_t at = (j - tile.j0) * dim;
                        axpy64(dv.data() + at, prob, dout, dim);
                        axpy64(dk.data() + at, shape.scale * ds, q, dim);
                    }
                }
            }
            for (std::int64_t j = tile.j0; j < tile.j1; ++j) {
                const std::int64_t kv = shape.kv_row(start + j, tile.head_kv);
                const std::int64_t at = (j - tile.j0) * dim;
                std::copy_n(dk.data() + at, dim, grads.dk.data() + kv);
                std::copy_n(dv.data() + at, dim, grads.dv.data() + kv);
            }
        }
    });
    return grads;
}

}  // namespace moba::ref
