// Backward of sampled rows (SEMANTICS.md §5.3), for benchmarks far too large for a full CPU
// pass: dq of sampled query tokens, dk and dv of sampled key tokens, in float64 and in the
// same-precision baseline. Every value is computed by the operations of attention_backward /
// baseline_backward in the same order, so the rows are those functions' rows, bitwise.
//
// dq of a row needs only its own keys: four passes over them (max; exp-sum; Delta = sum of
// P dP; dq), each recomputing the scores instead of storing them (as rows.cpp does). The
// baseline's passes are max; exp-sum; out = r(sum P v) and Delta = dout . out; dq.
// dk, dv of a key need every (query token, head) that attends it, each with its lse and Delta
// from its own forward: those (row, head) pairs run the first passes, then each (key, kv head)
// sums over its group's heads and the attending rows in token order, as the key tiles of the
// full functions do.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "reference/common.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"
#include "reference/rounding.hpp"
#include "reference/row_walk.hpp"

namespace moba::ref {

using detail::axpy64;
using detail::dot32;
using detail::dot64;
using detail::Rows;
using detail::Shape;
using detail::Walk;

namespace {

// The rows and their dout rows, checked.
struct BackwardRows {
    Rows rows;
    const std::vector<float>& dout;
    BackwardRows(const Problem& problem, const BackwardRowInputs& in)
        : rows(problem, in.rows), dout(in.dout_rows) {
        detail::check_size("dout_rows", dout.size(),
                           rows.count() * rows.shape().heads_q * rows.shape().dim);
    }
    const float* dout_row(std::int64_t r, int h) const { return dout.data() + rows.q_offset(r, h); }
};

// float64 statistics of one (row, head): as attention_backward's dq half computes them.
struct Stats64 {
    double max = -HUGE_VAL, sum = 0.0, delta = 0.0;
};

// Runs the passes of attention_backward's row loop over the (row, head) pairs with
// need[r * Hq + h] (all when need is empty): stats[r * Hq + h], and dq when dq is not null.
void passes64(const BackwardRows& b, const std::vector<char>& need, std::vector<Stats64>& stats,
              std::vector<double>* dq) {
    const Rows& rows = b.rows;
    const Shape& shape = rows.shape();
    const int dim = shape.dim;
    const int hq = shape.heads_q;
    stats.assign(rows.count() * hq, Stats64{});
    parallel_for_ranges(rows.items(), [&](std::int64_t begin, std::int64_t end) {
        Walk walk(hq);
        for (std::int64_t item = begin; item < end; ++item) {
            const std::int64_t r = rows.row_of(item);
            const int h0 = rows.first_head(item), h1 = rows.last_head(item);
            auto needed = [&](int h) { return need.empty() || need[r * hq + h] != 0; };
            auto score = [&](std::int64_t j, int h) {
                return shape.scale * dot64(rows.q(r, h), rows.k(r, j, h), dim);
            };
            Stats64* st = stats.data() + r * hq;
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (needed(h)) st[h].max = std::max(st[h].max, score(j, h));
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (needed(h)) st[h].sum += std::exp(score(j, h) - st[h].max);
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (!needed(h)) return;
                const double p = std::exp(score(j, h) - st[h].max);
                st[h].delta += p / st[h].sum * dot64(b.dout_row(r, h), rows.v(r, j, h), dim);
            });
            if (dq == nullptr) continue;
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                const double p = std::exp(score(j, h) - st[h].max);
                const double ds =
                    p / st[h].sum * (dot64(b.dout_row(r, h), rows.v(r, j, h), dim) - st[h].delta);
                axpy64(dq->data() + rows.q_offset(r, h), shape.scale * ds, rows.k(r, j, h), dim);
            });
        }
    });
}

// Baseline statistics of one (row, head): baseline_backward's row_forward and Delta.
struct Stats32 {
    float max = -HUGE_VALF, sum = 0.0f, delta = 0.0f;
};

void passes32(const BackwardRows& b, DType dtype, const std::vector<char>& need,
              std::vector<Stats32>& stats, std::vector<float>* dq) {
    const Rows& rows = b.rows;
    const Shape& shape = rows.shape();
    const int dim = shape.dim;
    const int hq = shape.heads_q;
    const auto scale = static_cast<float>(shape.scale);
    stats.assign(rows.count() * hq, Stats32{});
    parallel_for_ranges(rows.items(), [&](std::int64_t begin, std::int64_t end) {
        Walk walk(hq);
        std::vector<float> acc(static_cast<std::size_t>(hq) * dim);
        std::vector<float> out(dim);
        for (std::int64_t item = begin; item < end; ++item) {
            const std::int64_t r = rows.row_of(item);
            const int h0 = rows.first_head(item), h1 = rows.last_head(item);
            auto needed = [&](int h) { return need.empty() || need[r * hq + h] != 0; };
            auto score = [&](std::int64_t j, int h) {
                return detail::dot_mma(dtype, rows.q(r, h), rows.k(r, j, h), dim) * scale;
            };
            Stats32* st = stats.data() + r * hq;
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (needed(h)) st[h].max = std::max(st[h].max, score(j, h));
            });
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (needed(h)) st[h].sum += std::exp(score(j, h) - st[h].max);
            });
            std::fill(acc.begin() + h0 * dim, acc.begin() + h1 * dim, 0.0f);
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                if (!needed(h)) return;
                const float p = round_to(dtype, std::exp(score(j, h) - st[h].max) / st[h].sum);
                const float* v = rows.v(r, j, h);
                float* a = acc.data() + h * dim;
                for (int d = 0; d < dim; ++d) a[d] += p * v[d];
            });
            for (int h = h0; h < h1; ++h) {
                if (!needed(h)) continue;
                for (int d = 0; d < dim; ++d) out[d] = round_to(dtype, acc[h * dim + d]);
                st[h].delta = dot32(b.dout_row(r, h), out.data(), dim);
            }
            if (dq == nullptr) continue;
            std::fill(acc.begin() + h0 * dim, acc.begin() + h1 * dim, 0.0f);
            rows.for_each_key(r, h0, h1, walk, [&](std::int64_t j, int h) {
                const float p = round_to(dtype, std::exp(score(j, h) - st[h].max) / st[h].sum);
                const float dp = detail::dot_mma(dtype, b.dout_row(r, h), rows.v(r, j, h), dim);
                const float ds = round_to(dtype, p * (dp - st[h].delta));
                const float* k = rows.k(r, j, h);
                float* a = acc.data() + h * dim;
                for (int d = 0; d < dim; ++d) a[d] += ds * k[d];
            });
            for (int h = h0; h < h1; ++h) {
                float* g = dq->data() + rows.q_offset(r, h);
                for (int d = 0; d < dim; ++d) g[d] = round_to(dtype, scale * acc[h * dim + d]);
            }
        }
    });
}

// The sampled keys against the query rows: which (row, head) attends which key.
class KeyPlan {
public:
    KeyPlan(const Rows& rows, const std::vector<std::int64_t>& keys) : rows_(rows), keys_(keys) {
        const Shape& shape = rows.shape();
        order_.resize(rows.count());
        std::iota(order_.begin(), order_.end(), std::int64_t{0});
        std::sort(order_.begin(), order_.end(),
                  [&](std::int64_t a, std::int64_t b) { return rows.token(a) < rows.token(b); });
        std::vector<std::int64_t> tokens(order_.size());
        for (std::size_t m = 0; m < order_.size(); ++m) tokens[m] = rows.token(order_[m]);
        for (std::size_t m = 1; m < order_.size(); ++m) {
            if (tokens[m] == tokens[m - 1]) {
                throw std::invalid_argument("query rows name token " +
                                            std::to_string(rows.token(order_[m])) +
                                            " twice (each attending row must be counted once)");
            }
        }
        for (std::int64_t key : keys) {
            if (key < 0 || key >= shape.total) {
                throw std::invalid_argument("key token " + std::to_string(key) +
                                            " is outside the problem's " +
                                            std::to_string(shape.total) + " tokens");
            }
            if (!std::binary_search(tokens.begin(), tokens.end(), key)) {
                throw std::invalid_argument("key token " + std::to_string(key) +
                                            " is not among the query rows (its own row attends it)");
            }
        }
        need_.assign(rows.count() * shape.heads_q, 0);
        for (std::size_t m = 0; m < keys.size(); ++m) {
            for (std::int64_t r : order_) {
                for (int h = 0; h < shape.heads_q; ++h) {
                    if (attends(r, h, m)) need_[r * shape.heads_q + h] = 1;
                }
            }
        }
    }

    const std::vector<char>& need() const { return need_; }
    // Rows in ascending token order.
    const std::vector<std::int64_t>& order() const { return order_; }
    // Whether query row r, head h attends key m (same sequence, not before it, block selected).
    bool attends(std::int64_t r, int h, std::size_t m) const {
        const Shape& shape = rows_.shape();
        const std::int64_t key = keys_[m];
        const std::int64_t start = rows_.start(r);
        if (key < start || key > rows_.token(r)) return false;  // another sequence, or later
        if (rows_.full()) return true;
        const auto block = static_cast<std::int32_t>((key - start) / shape.block);
        return detail::selects(rows_.sel(r, h), shape.slots, block);
    }

private:
    const Rows& rows_;
    const std::vector<std::int64_t>& keys_;
    std::vector<std::int64_t> order_;
    std::vector<char> need_;
};

}  // namespace

std::vector<double> backward_query_rows(const Problem& problem, const BackwardRowInputs& inputs) {
    const BackwardRows b(problem, inputs);
    std::vector<double> dq(inputs.rows.q_rows.size(), 0.0);
    std::vector<Stats64> stats;
    passes64(b, {}, stats, &dq);
    return dq;
}

std::vector<float> baseline_backward_query_rows(const Problem& problem,
                                                const BackwardRowInputs& inputs) {
    const BackwardRows b(problem, inputs);
    std::vector<float> dq(inputs.rows.q_rows.size());
    std::vector<Stats32> stats;
    passes32(b, problem.dtype, {}, stats, &dq);
    return dq;
}

KeyGradients backward_key_rows(const Problem& problem, const BackwardRowInputs& queries,
                               const std::vector<std::int64_t>& keys) {
    const BackwardRows b(problem, queries);
    const Rows& rows = b.rows;
    const Shape& shape = rows.shape();
    const KeyPlan plan(rows, keys);
    std::vector<Stats64> stats;
    passes64(b, plan.need(), stats, nullptr);
    const int dim = shape.dim;
    const auto count = static_cast<std::int64_t>(keys.size());
    KeyGradients g;
    g.dk.assign(count * shape.heads_kv * dim, 0.0);
    g.dv.assign(g.dk.size(), 0.0);
    // Per (key, kv head): the group's heads ascending, then the attending rows by token, as
    // attention_backward's key tiles sum them.
    parallel_for(count * shape.heads_kv, [&](std::int64_t index) {
        const std::int64_t m = index / shape.heads_kv;
        const int hk = static_cast<int>(index % shape.heads_kv);
        const float* k = queries.rows.k->data() + shape.kv_row(keys[m], hk);
        const float* v = queries.rows.v->data() + shape.kv_row(keys[m], hk);
        double* dk = g.dk.data() + index * dim;
        double* dv = g.dv.data() + index * dim;
        for (int h = hk * shape.group; h < (hk + 1) * shape.group; ++h) {
            for (std::int64_t r : plan.order()) {
                if (!plan.attends(r, h, static_cast<std::size_t>(m))) continue;
                const float* q = rows.q(r, h);
                const float* dout = b.dout_row(r, h);
                const Stats64& st = stats[r * shape.heads_q + h];
                const double lse = st.max + std::log(st.sum);
                const double prob = std::exp(shape.scale * dot64(q, k, dim) - lse);
                const double ds = prob * (dot64(dout, v, dim) - st.delta);
                axpy64(dv, prob, dout, dim);
                axpy64(dk, shape.scale * ds, q, dim);
            }
        }
    });
    return g;
}

BaselineKeyGradients baseline_backward_key_rows(const Problem& problem,
                                                const BackwardRowInputs& queries,
                                                const std::vector<std::int64_t>& keys) {
    const BackwardRows b(problem, queries);
    const Rows& rows = b.rows;
    const Shape& shape = rows.shape();
    const KeyPlan plan(rows, keys);
    const DType dtype = problem.dtype;
    std::vector<Stats32> stats;
    passes32(b, dtype, plan.need(), stats, nullptr);
    const int dim = shape.dim;
    const auto scale = static_cast<float>(shape.scale);
    const auto count = static_cast<std::int64_t>(keys.size());
    BaselineKeyGradients g;
    g.dk.resize(count * shape.heads_kv * dim);
    g.dv.resize(g.dk.size());
    // Per (key, kv head): each head's sums over the attending rows in fp32, the heads summed in
    // fp32 in head order, then one rounding (baseline_backward's key tiles).
    parallel_for_ranges(count * shape.heads_kv, [&](std::int64_t begin, std::int64_t end) {
        std::vector<float> dk_head(dim), dv_head(dim), dk_group(dim), dv_group(dim);
        for (std::int64_t index = begin; index < end; ++index) {
            const std::int64_t m = index / shape.heads_kv;
            const int hk = static_cast<int>(index % shape.heads_kv);
            const float* k = queries.rows.k->data() + shape.kv_row(keys[m], hk);
            const float* v = queries.rows.v->data() + shape.kv_row(keys[m], hk);
            std::fill(dk_group.begin(), dk_group.end(), 0.0f);
            std::fill(dv_group.begin(), dv_group.end(), 0.0f);
            for (int h = hk * shape.group; h < (hk + 1) * shape.group; ++h) {
                std::fill(dk_head.begin(), dk_head.end(), 0.0f);
                std::fill(dv_head.begin(), dv_head.end(), 0.0f);
                for (std::int64_t r : plan.order()) {
                    if (!plan.attends(r, h, static_cast<std::size_t>(m))) continue;
                    const float* q = rows.q(r, h);
                    const float* dout = b.dout_row(r, h);
                    const Stats32& st = stats[r * shape.heads_q + h];
                    const float s = detail::dot_mma(dtype, q, k, dim) * scale;
                    const float p = round_to(dtype, std::exp(s - st.max) / st.sum);
                    const float ds = round_to(dtype, p * (detail::dot_mma(dtype, dout, v, dim) - st.delta));
                    for (int d = 0; d < dim; ++d) {
                        dv_head[d] += p * dout[d];
                        dk_head[d] += ds * q[d];
                    }
                }
                for (int d = 0; d < dim; ++d) {
                    dk_group[d] += dk_head[d];
                    dv_group[d] += dv_head[d];
                }
            }
            float* dk = g.dk.data() + index * dim;
            float* dv = g.dv.data() + index * dim;
            for (int d = 0; d < dim; ++d) {
                dk[d] = round_to(dtype, scale * dk_group[d]);
                dv[d] = round_to(dtype, dv_group[d]);
            }
        }
    });
    return g;
}

}  // namespace moba::ref
