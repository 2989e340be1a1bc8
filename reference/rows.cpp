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

namespace moba::ref {

using detail::axpy64;
using detail::dot64;
using detail::Shape;

namespace {

constexpr std::int64_t kItemBytes = 4096;  // bytes of k (and of v) per key a work item reads

// Scratch of one worker range for walking the selections of a row's heads.
struct Walk {
    std::vector<int> cursor;  // per head: its next selection slot
    std::vector<int> heads;   // the heads that select the current block
    explicit Walk(int heads_q) : cursor(heads_q), heads(heads_q) {}
};

// The requested rows, checked against the problem, and how they split into work items.
class Rows {
public:
    Rows(const Problem& problem, const RowInputs& in)
        : shape_(problem), in_(in), count_(static_cast<std::int64_t>(in.tokens.size())) {
        problem.validate();
        detail::check_size("q_rows", in.q_rows.size(), count_ * shape_.heads_q * shape_.dim);
        if (in.k == nullptr || in.v == nullptr) {
            throw std::invalid_argument("row inputs lack k or v (null pointer)");
        }
        detail::check_size("k", in.k->size(), problem.kv_elems());
        detail::check_size("v", in.v->size(), problem.kv_elems());
        full_ = in.sel_rows.slots == 0;
        if (full_) {
            detail::check_size("sel_rows (no slots: full causal)", in.sel_rows.blocks.size(), 0);
        } else {
            if (in.sel_rows.slots != shape_.slots) {
                throw std::invalid_argument("sel_rows has " + std::to_string(in.sel_rows.slots) +
                                            " slots, the problem needs " +
                                            std::to_string(shape_.slots) + " (or 0: full causal)");
            }
            detail::check_size("sel_rows", in.sel_rows.blocks.size(),
                               count_ * shape_.heads_q * shape_.slots);
        }
        start_.resize(in.tokens.size());
        for (std::int64_t r = 0; r < count_; ++r) {
            const std::int64_t t = in.tokens[r];
            if (t < 0 || t >= shape_.total) {
                throw std::invalid_argument("row " + std::to_string(r) + " names token " +
                                            std::to_string(t) + ", the problem has " +
                                            std::to_string(shape_.total) + " tokens");
            }
            start_[r] = shape_.cu[shape_.sequence_of(t)];
            if (full_) continue;
            const auto own = static_cast<std::int32_t>((t - start_[r]) / shape_.block);
            for (int h = 0; h < shape_.heads_q; ++h) {
                detail::check_selection_row(shape_, sel(r, h), t, h, own);
            }
        }
        const std::int64_t head_bytes = std::int64_t{shape_.dim} * std::int64_t{sizeof(float)};
        kv_per_item_ =
            static_cast<int>(std::clamp<std::int64_t>(kItemBytes / head_bytes, 1, shape_.heads_kv));
        items_per_row_ = (shape_.heads_kv + kv_per_item_ - 1) / kv_per_item_;
    }

    const Shape& shape() const { return shape_; }
    std::int64_t count() const { return count_; }
    std::int64_t items() const { return count_ * items_per_row_; }
    std::int64_t row_of(std::int64_t item) const { return item / items_per_row_; }
    // Query heads [first, last) of work item `item`: those of its kv heads.
    int first_head(std::int64_t item) const {
        return static_cast<int>(item % items_per_row_) * kv_per_item_ * shape_.group;
    }
    int last_head(std::int64_t item) const {
        return std::min(first_head(item) + kv_per_item_ * shape_.group, shape_.heads_q);
    }

    // Offset of row r, head h in [T, Hq, D].
    std::int64_t q_offset(std::int64_t r, int h) const {
        return (r * shape_.heads_q + h) * shape_.dim;
    }
    const float* q(std::int64_t r, int h) const { return in_.q_rows.data() + q_offset(r, h); }
    // Key / value row of local key j of row r's sequence for query head h, read in place.
    const float* k(std::int64_t r, std::int64_t j, int h) const {
        return in_.k->data() + shape_.kv_row(start_[r] + j, h / shape_.group);
    }
    const float* v(std::int64_t r, std::int64_t j, int h) const {
        return in_.v->data() + shape_.kv_row(start_[r] + j, h / shape_.group);
    }

    // Calls visit(j, h) for every local key j row r attends with a head h in [h0, h1): keys
    // ascending, and for each key the heads that attend it ascending. Per head that is the
    // order of detail::for_each_key; per key the heads read one contiguous stretch of k / v.
    template <class F>
    void for_each_key(std::int64_t r, int h0, int h1, Walk& walk, F&& visit) const {
        const std::int64_t i = in_.tokens[r] - start_[r];
        if (full_) {
            for (std::int64_t j = 0; j <= i; ++j) {
                for (int h = h0; h < h1; ++h) visit(j, h);
            }
            return;
        }
        std::fill(walk.cursor.begin() + h0, walk.cursor.begin() + h1, 0);
        for (;;) {  // the blocks any of the heads selects, ascending
            std::int32_t block = std::numeric_limits<std::int32_t>::max();
            for (int h = h0; h < h1; ++h) {
                const int slot = walk.cursor[h];
                if (slot < shape_.slots && sel(r, h)[slot] >= 0) {
                    block = std::min(block, sel(r, h)[slot]);
                }
            }
            if (block == std::numeric_limits<std::int32_t>::max()) return;
            std::size_t n = 0;
            for (int h = h0; h < h1; ++h) {
                const int slot = walk.cursor[h];
                if (slot < shape_.slots && sel(r, h)[slot] == block) {
                    walk.heads[n++] = h;
                    ++walk.cursor[h];
                }
            }
            const std::int64_t j0 = std::int64_t{block} * shape_.block;
            const std::int64_t j1 = std::min(j0 + shape_.block, i + 1);
            for (std::int64_t j = j0; j < j1; ++j) {
                for (std::size_t m = 0; m < n; ++m) visit(j, walk.heads[m]);
            }
        }
    }

private:
    const std::int32_t* sel(std::int64_t r, int h) const {
        return in_.sel_rows.blocks.data() + (r * shape_.heads_q + h) * shape_.slots;
    }

    Shape shape_;
    const RowInputs& in_;
    std::int64_t count_;
    bool full_ = true;
    std::vector<std::int64_t> start_;  // [T] first token of each row's sequence
    int kv_per_item_ = 1;              // kv heads of one work item
    int items_per_row_ = 1;
};

}  // namespace

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
