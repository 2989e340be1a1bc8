// The same-precision baseline (SEMANTICS.md §5): what a plain low-precision implementation computes,
// the yardstick of every error bound. fp32 arithmetic throughout; rounded to the problem's
// dtype exactly where such an implementation stores a low-precision value: the probabilities
// before the product with V, dS before the products with K and Q, and every output.
// Sums over keys or queries run in ascending index order. The dot products a tensor-core
// implementation takes from MMAs (scores q.k, dP = dout.v) use the tensor-core model
// detail::dot_mma; the others (Delta, gating scores) detail::dot32, as CUDA cores compute them.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "reference/common.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"
#include "reference/rounding.hpp"

namespace moba::ref {

using detail::dot32;
using detail::Shape;

namespace {

constexpr int kKeyTile = 16;  // keys per dk/dv work item

struct Context {
    const Shape& shape;
    const detail::HeadMajorInputs& x;
    const Selection& sel;
    DType dtype;
    float scale;  // (float) problem scale
};

// Scaled fp32 score of query row (t, h) against kv row of token `key`.
float score(const Context& c, std::int64_t t, int h, std::int64_t key) {
    return detail::dot_mma(c.dtype, c.x.q.row(t, h), c.x.k.row(key, h / c.shape.group), c.shape.dim) * c.scale;
}

// The rounded probability from a score and its row's max and exp-sum.
float probability(const Context& c, float s, float max, float sum) {
    return round_to(c.dtype, std::exp(s - max) / sum);
}

// dS = round(P * (dout . v - Delta)).
float score_grad(const Context& c, float p, const float* dout, std::int64_t key, int h,
                 float delta) {
    const float dp = detail::dot_mma(c.dtype, dout, c.x.v.row(key, h / c.shape.group), c.shape.dim);
    return round_to(c.dtype, p * (dp - delta));
}

struct RowStats {
    float max;
    float sum;
};

// Forward of one query row: p[n] = rounded probabilities of the attended keys in order,
// out = round(sum P v). Returns the row's max and exp-sum.
RowStats row_forward(const Context& c, std::int64_t start, std::int64_t t, int h,
                     std::vector<float>& p, std::vector<float>& acc, float* out) {
    const Shape& shape = c.shape;
    const std::int32_t* sel_row = c.sel.blocks.data() + shape.sel_row(t, h);
    std::size_t n = 0;
    float max = -HUGE_VALF;
    detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
        p[n] = score(c, t, h, start + j);
        max = std::max(max, p[n++]);
    });
    float sum = 0.0f;
    for (std::size_t m = 0; m < n; ++m) sum += std::exp(p[m] - max);
    for (std::size_t m = 0; m < n; ++m) p[m] = probability(c, p[m], max, sum);
    std::fill(acc.begin(), acc.end(), 0.0f);
    n = 0;
    const int hk = h / shape.group;
    detail::for_each_key(shape, sel_row, t - start, [&](std::int64_t j) {
        const float* v = c.x.v.row(start + j, hk);
        const float pj = p[n++];
        for (int d = 0; d < shape.dim; ++d) acc[d] += pj * v[d];
    });
    for (int d = 0; d < shape.dim; ++d) out[d] = round_to(c.dtype, acc[d]);
    return {max, sum};
}

}  // namespace

ForwardOutput baseline_forward(const Problem& problem, const HostInputs& inputs,
                               const Selection& sel) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    detail::check_selection(shape, sel);
    const detail::HeadMajorInputs x(shape, inputs, false);
    const Context c{shape, x, sel, problem.dtype, static_cast<float>(shape.scale)};
    ForwardOutput fwd;
    fwd.out.resize(problem.q_elems());
    fwd.lse.resize(problem.lse_elems());
    parallel_for_ranges(shape.heads_q * shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> p(problem.max_seqlen());
        std::vector<float> acc(shape.dim);
        for (std::int64_t r = begin; r < end; ++r) {
            const int h = static_cast<int>(r / shape.total);
            const std::int64_t t = r % shape.total;
            const std::int64_t start = shape.cu[shape.sequence_of(t)];
            const RowStats row =
                row_forward(c, start, t, h, p, acc, fwd.out.data() + shape.q_row(t, h));
            fwd.lse[shape.lse_index(t, h)] = row.max + std::log(row.sum);
        }
    });
    return fwd;
}

GradientOutput baseline_backward(const Problem& problem, const HostInputs& inputs,
                                 const Selection& sel) {
    detail::check_inputs(problem, inputs, true);
    const Shape shape(problem);
    detail::check_selection(shape, sel);
    const detail::HeadMajorInputs x(shape, inputs, true);
    const Context c{shape, x, sel, problem.dtype, static_cast<float>(shape.scale)};
    const int dim = shape.dim;
    GradientOutput grads;
    grads.dq.resize(problem.q_elems());
    grads.dk.resize(problem.kv_elems());
    grads.dv.resize(problem.kv_elems());

    // Rows: the baseline's own forward, Delta = dout . out (its rounded out), then
    // dq = round(scale * sum_j dS_ij k_j).
    std::vector<RowStats> stats(problem.lse_elems());  // [Hq, total]
    std::vector<float> delta(problem.lse_elems());     // [Hq, total]
    parallel_for_ranges(shape.heads_q * shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> p(problem.max_seqlen());
        std::vector<float> acc(dim);
        std::vector<float> out(dim);
        for (std::int64_t r = begin; r < end; ++r) {
            const int h = static_cast<int>(r / shape.total);
            const std::int64_t t = r % shape.total;
            const std::int64_t start = shape.cu[shape.sequence_of(t)];
            const RowStats row = row_forward(c, start, t, h, p, acc, out.data());
            const float* dout = x.dout.row(t, h);
            const float row_delta = dot32(dout, out.data(), dim);
            std::fill(acc.begin(), acc.end(), 0.0f);
            std::size_t n = 0;
            detail::for_each_key(
                shape, sel.blocks.data() + shape.sel_row(t, h), t - start, [&](std::int64_t j) {
                    const float ds = score_grad(c, p[n++], dout, start + j, h, row_delta);
                    const float* k = x.k.row(start + j, h / shape.group);
                    for (int d = 0; d < dim; ++d) acc[d] += ds * k[d];
                });
            float* dq = grads.dq.data() + shape.q_row(t, h);
            for (int d = 0; d < dim; ++d) dq[d] = round_to(c.dtype, c.scale * acc[d]);
            stats[shape.lse_index(t, h)] = row;
            delta[shape.lse_index(t, h)] = row_delta;
        }
    });

    // Key tiles (sequence, kv head, inside one block): per query head of the group
    // dv_h = sum_i P_ij dout_i and dk_h = sum_i dS_ij q_i in fp32, then summed over the group
    // in fp32, then dv = round(sum), dk = round(scale * sum).
    const std::vector<detail::KeyTile> tiles = detail::key_tiles(shape, kKeyTile);
    parallel_for_ranges(static_cast<std::int64_t>(tiles.size()), [&](std::int64_t begin,
                                                                     std::int64_t end) {
        const std::size_t tile_elems = static_cast<std::size_t>(kKeyTile) * dim;
        std::vector<float> dk_head(tile_elems), dv_head(tile_elems);
        std::vector<float> dk_group(tile_elems), dv_group(tile_elems);
        for (std::int64_t index = begin; index < end; ++index) {
            const detail::KeyTile& tile = tiles[index];
            const std::int64_t start = shape.cu[tile.seq];
            const std::int64_t len = shape.cu[tile.seq + 1] - start;
            const auto block = static_cast<std::int32_t>(tile.j0 / shape.block);
            std::fill(dk_group.begin(), dk_group.end(), 0.0f);
            std::fill(dv_group.begin(), dv_group.end(), 0.0f);
            for (int h = tile.head_kv * shape.group; h < (tile.head_kv + 1) * shape.group; ++h) {
                std::fill(dk_head.begin(), dk_head.end(), 0.0f);
                std::fill(dv_head.begin(), dv_head.end(), 0.0f);
                for (std::int64_t i = tile.j0; i < len; ++i) {
                    const std::int64_t t = start + i;
                    if (!detail::selects(sel.blocks.data() + shape.sel_row(t, h), shape.slots,
                                         block)) {
                        continue;
                    }
                    const float* q = x.q.row(t, h);
                    const float* dout = x.dout.row(t, h);
                    const RowStats row = stats[shape.lse_index(t, h)];
                    const float row_delta = delta[shape.lse_index(t, h)];
                    for (std::int64_t j = tile.j0; j < std::min(tile.j1, i + 1); ++j) {
                        const float p = probability(c, score(c, t, h, start + j), row.max, row.sum);
                        const float ds = score_grad(c, p, dout, start + j, h, row_delta);
                        float* dv = dv_head.data() + (j - tile.j0) * dim;
                        float* dk = dk_head.data() + (j - tile.j0) * dim;
                        for (int d = 0; d < dim; ++d) {
                            dv[d] += p * dout[d];
                            dk[d] += ds * q[d];
                        }
                    }
                }
                for (std::size_t e = 0; e < tile_elems; ++e) {
                    dk_group[e] += dk_head[e];
                    dv_group[e] += dv_head[e];
                }
            }
            for (std::int64_t j = tile.j0; j < tile.j1; ++j) {
                const std::int64_t kv = shape.kv_row(start + j, tile.head_kv);
                const std::int64_t at = (j - tile.j0) * dim;
                for (int d = 0; d < dim; ++d) {
                    grads.dk[kv + d] = round_to(c.dtype, c.scale * dk_group[at + d]);
                    grads.dv[kv + d] = round_to(c.dtype, dv_group[at + d]);
                }
            }
        }
    });
    return grads;
}

Selection baseline_gating(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    const int dim = shape.dim;
    const int hkv = shape.heads_kv;
    std::vector<std::int64_t> first(shape.batch() + 1, 0);  // blocks before sequence s
    for (int s = 0; s < shape.batch(); ++s) {
        first[s + 1] = first[s] + (problem.seqlens[s] + shape.block - 1) / shape.block;
    }
    // kbar [blocks, Hkv, D]: fp32 sum in token order, divided by the token count.
    std::vector<float> kbar(first.back() * hkv * dim);
    parallel_for(first.back() * hkv, [&](std::int64_t index) {
        const std::int64_t global = index / hkv;
        const int hk = static_cast<int>(index % hkv);
        const int s =
            static_cast<int>(std::upper_bound(first.begin(), first.end(), global) - first.begin()) -
            1;
        const std::int64_t t0 = shape.cu[s] + (global - first[s]) * shape.block;
        const std::int64_t t1 = std::min<std::int64_t>(t0 + shape.block, shape.cu[s + 1]);
        float* mean = kbar.data() + index * dim;
        for (std::int64_t t = t0; t < t1; ++t) {
            const float* k = inputs.k.data() + shape.kv_row(t, hk);
            for (int d = 0; d < dim; ++d) mean[d] += k[d];
        }
        const auto count = static_cast<float>(t1 - t0);
        for (int d = 0; d < dim; ++d) mean[d] /= count;
    });

    Selection sel;
    sel.slots = shape.slots;
    sel.blocks.assign(shape.total * shape.heads_q * shape.slots, -1);
    parallel_for_ranges(shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> scores;
        std::vector<int> order;
        for (std::int64_t t = begin; t < end; ++t) {
            const int s = shape.sequence_of(t);
            const int own = static_cast<int>((t - shape.cu[s]) / shape.block);
            const int taken = std::min(problem.topk - 1, own);
            for (int h = 0; h < shape.heads_q; ++h) {
                const float* q = inputs.q.data() + shape.q_row(t, h);
                const int hk = h / shape.group;
                scores.resize(own);
                for (int j = 0; j < own; ++j) {
                    scores[j] = dot32(q, kbar.data() + ((first[s] + j) * hkv + hk) * dim, dim);
                }
                order.resize(own);
                std::iota(order.begin(), order.end(), 0);
                std::partial_sort(
                    order.begin(), order.begin() + taken, order.end(), [&](int a, int b) {
                        return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
                    });
                std::int32_t* row = sel.blocks.data() + shape.sel_row(t, h);
                std::copy(order.begin(), order.begin() + taken, row);
                row[taken] = own;
                std::sort(row, row + taken);
            }
        }
    });
    return sel;
}

}  // namespace moba::ref
