// Forward of a subset of query rows (SEMANTICS.md §3), for problems far too large for a full CPU
// pass: the float64 reference and the same-precision baseline of the requested tokens only.
// Every (row, head) does the arithmetic of attention_forward / baseline_forward, operation
// for operation in the same order, so its results are those functions' rows: bitwise for
// the selection path and the baseline, to rounding (~1e-16) against full_attention_forward,
// which normalises the probabilities before the product with V.
//
// Cost is the rows' attended keys times D, and nothing of O(total) is copied or allocated:
// k and v are read in place. Their rows of one kv head lie Hkv * D floats apart, a new page
// per key once Hkv * D >= 1024, and a walk over one head's keys then waits on a cache miss
// per key (64 rows of a 131072-token sequence, Hkv = 8, D = 128: 24 CPU-s per (row, head)
// item against 4.8 here; software prefetch helped only partly). So a work item is a row
// with a page's worth of kv heads (kItemBytes of every key token it reads, contiguous) and
// all query heads of those kv heads. Instead of keeping every score of a row (heads x keys
// doubles), each pass over the keys computes the scores again, bitwise the same: max, then
// exp, sum and P v (the baseline needs the sum before P: max, sum, then P v).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "reference/common.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"
#include "reference/rounding.hpp"
#include "reference/row_walk.hpp"

namespace moba::ref {

using detail::axpy64;
using detail::dot64;
using detail::Shape;

using detail::Rows;
using detail::Walk;

Forward forward_rows(const Problem& problem, const RowInputs& inputs) {
    const Rows rows(problem, inputs);
    const Shape& shape = rows.shape();
    const int dim = shape.dim;
    const std::int64_t count = rows.count();
    Forward fwd;
    fwd.out.resize(count * shape.heads_q * dim);
    fwd.lse.resize(count * shape.heads_q);
    // attention_forward's arithmetic per (row, head): s = scale * dot64(q, k), max, then
    // p = exp(s - max), sum += p and out += p v in key order, out /= sum.
    parallel_for_ranges(rows.items(), [&](std::int64_t begin, std::int64_t end) {
        Walk walk(shape.heads_q);
        std::vector<double> max(shape.heads_q), sum(shape.heads_q);
        for (std::int64_t item = begin; item < end; ++item) {
            const std::int64_t r = rows.row_of(item);
            const int h0 = rows.first_head(item), h1 = rows.last_head(item);
            auto score = [&](std::int64_t j, int h) {
                return shape.scale * dot64(rows.q(r, h), rows.k(r, j, h), dim);
            };
            std::fill(max.begin() + h0, max.begin() + h1, -HUGE_VAL);
            std::fill(sum.begin() + h0, sum.begin() + h1, 0.0);
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                max[h] = std::max(max[h], score(j, h));
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                const double p = std::exp(score(j, h) - max[h]);
                sum[h] += p;
                axpy64(fwd.out.data() + rows.q_offset(r, h), p, rows.v(r, j, h), dim);
            });
            for (int h = h0; h < h1; ++h) {
                double* out = fwd.out.data() + rows.q_offset(r, h);
                for (int d = 0; d < dim; ++d) out[d] /= sum[h];
                fwd.lse[h * count + r] = max[h] + std::log(sum[h]);
            }
        }
    });
    return fwd;
}

ForwardOutput baseline_forward_rows(const Problem& problem, const RowInputs& inputs) {
    const Rows rows(problem, inputs);
    const Shape& shape = rows.shape();
    const int dim = shape.dim;
    const std::int64_t count = rows.count();
    const DType dtype = problem.dtype;
    const auto scale = static_cast<float>(shape.scale);
    ForwardOutput fwd;
    fwd.out.resize(count * shape.heads_q * dim);
    fwd.lse.resize(count * shape.heads_q);
    // baseline_forward's arithmetic per (row, head): s = dot_mma(q, k) * scale, max; sum of
    // exp(s - max); P = r(exp(s - max) / sum), acc += P v in key order; out = r(acc).
    parallel_for_ranges(rows.items(), [&](std::int64_t begin, std::int64_t end) {
        Walk walk(shape.heads_q);
        std::vector<float> max(shape.heads_q), sum(shape.heads_q);
        std::vector<float> acc(static_cast<std::size_t>(shape.heads_q) * dim);
        for (std::int64_t item = begin; item < end; ++item) {
            const std::int64_t r = rows.row_of(item);
            const int h0 = rows.first_head(item), h1 = rows.last_head(item);
            auto score = [&](std::int64_t j, int h) {
                return detail::dot_mma(dtype, rows.q(r, h), rows.k(r, j, h), dim) * scale;
            };
            std::fill(max.begin() + h0, max.begin() + h1, -HUGE_VALF);
            std::fill(sum.begin() + h0, sum.begin() + h1, 0.0f);
            std::fill(acc.begin() + h0 * dim, acc.begin() + h1 * dim, 0.0f);
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                max[h] = std::max(max[h], score(j, h));
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                sum[h] += std::exp(score(j, h) - max[h]);
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                const float p = round_to(dtype, std::exp(score(j, h) - max[h]) / sum[h]);
                const float* v = rows.v(r, j, h);
                float* a = acc.data() + h * dim;
                for (int d = 0; d < dim; ++d) a[d] += p * v[d];
            });
            for (int h = h0; h < h1; ++h) {
                float* out = fwd.out.data() + rows.q_offset(r, h);
                for (int d = 0; d < dim; ++d) out[d] = round_to(dtype, acc[h * dim + d]);
                fwd.lse[h * count + r] = max[h] + std::log(sum[h]);
            }
        }
    });
    return fwd;
}

}  // namespace moba::ref
