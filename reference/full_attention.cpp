// Plain causal attention in float64: query i of a sequence attends keys 0..i of the same
// sequence. Written apart from the selection path (its own loops, its own mask) so that
// MoBA at zero sparsity is checked against something that does not share its code.
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

constexpr int kKeys = 16;  // keys per dk/dv work item

// Forward of query (t, h) over keys start..t: leaves the probabilities in p[0..t-start],
// writes out = P v, returns lse.
double causal_row(const Shape& shape, const detail::HeadMajorInputs& x, std::int64_t start,
                  std::int64_t t, int h, std::vector<double>& p, double* out) {
    const int dim = shape.dim;
    const int hk = h / shape.group;
    const float* q = x.q.row(t, h);
    const std::int64_t count = t - start + 1;
    double max = -HUGE_VAL;
    for (std::int64_t j = 0; j < count; ++j) {
        p[j] = shape.scale * dot64(q, x.k.row(start + j, hk), dim);
        max = std::max(max, p[j]);
    }
    double sum = 0.0;
    for (std::int64_t j = 0; j < count; ++j) {
        p[j] = std::exp(p[j] - max);
        sum += p[j];
    }
    std::fill(out, out + dim, 0.0);
    for (std::int64_t j = 0; j < count; ++j) {
        p[j] /= sum;
        axpy64(out, p[j], x.v.row(start + j, hk), dim);
    }
    return max + std::log(sum);
}

}  // namespace

Forward full_attention_forward(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    const detail::HeadMajorInputs x(shape, inputs, false);
    Forward fwd;
    fwd.out.resize(problem.q_elems());
    fwd.lse.resize(problem.lse_elems());
    parallel_for_ranges(shape.heads_q * shape.total, [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> p(problem.max_seqlen());
        for (std::int64_t r = begin; r < end; ++r) {
            const int h = static_cast<int>(r / shape.total);
            const std::int64_t t = r % shape.total;
            const std::int64_t start = shape.cu[shape.sequence_of(t)];
            fwd.lse[shape.lse_index(t, h)] =
                causal_row(shape, x, start, t, h, p, fwd.out.data() + shape.q_row(t, h));
        }
    });
    return fwd;
}

Gradients full_attention_backward(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, true);
    const Shape shape(problem);
    const detail::HeadMajorInputs x(shape, inputs, true);
    const int dim = shape.dim;
    Gradients grads;
    grads.dq.resize(problem.q_elems());
    grads.dk.resize(problem.kv_elems());
    grads.dv.resize(problem.kv_elems());

    // Rows: P and dP_ij = dout_i . v_j over keys j <= i, Delta_i = sum_j P_ij dP_ij, then
    // dq_i = scale * sum_j P_ij (dP_ij - Delta_i) k_j.
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
            const std::int64_t count = t - start + 1;
            const float* q = x.q.row(t, h);
            const float* dout = x.dout.row(t, h);
            double max = -HUGE_VAL;
            for (std::int64_t j = 0; j < count; ++j) {
                p[j] = shape.scale * dot64(q, x.k.row(start + j, hk), dim);
                dp[j] = dot64(dout, x.v.row(start + j, hk), dim);
                max = std::max(max, p[j]);
            }
            double sum = 0.0;
            for (std::int64_t j = 0; j < count; ++j) sum += (p[j] = std::exp(p[j] - max));
            double row_delta = 0.0;
            for (std::int64_t j = 0; j < count; ++j) row_delta += (p[j] /= sum) * dp[j];
            double* dq = grads.dq.data() + shape.q_row(t, h);
            for (std::int64_t j = 0; j < count; ++j) {
                axpy64(dq, shape.scale * p[j] * (dp[j] - row_delta), x.k.row(start + j, hk), dim);
            }
            lse[shape.lse_index(t, h)] = max + std::log(sum);
            delta[shape.lse_index(t, h)] = row_delta;
        }
    });

    // Key groups (sequence, kv head, kKeys consecutive keys): dk, dv summed over the group's
    // query heads and every query at or after the key.
    std::vector<std::int64_t> first(shape.batch() + 1, 0);  // key groups before sequence s
    for (int s = 0; s < shape.batch(); ++s) {
        const std::int64_t len = shape.cu[s + 1] - shape.cu[s];
        first[s + 1] = first[s] + shape.heads_kv * ((len + kKeys - 1) / kKeys);
    }
    parallel_for_ranges(first.back(), [&](std::int64_t begin, std::int64_t end) {
        std::vector<double> dk(kKeys * dim);
        std::vector<double> dv(kKeys * dim);
        for (std::int64_t g = begin; g < end; ++g) {
            const int s =
                static_cast<int>(std::upper_bound(first.begin(), first.end(), g) - first.begin()) -
                1;
            const std::int64_t start = shape.cu[s];
            const std::int64_t stop = shape.cu[s + 1];
            const std::int64_t groups_per_head = (first[s + 1] - first[s]) / shape.heads_kv;
            const int hk = static_cast<int>((g - first[s]) / groups_per_head);
            const std::int64_t k0 = start + ((g - first[s]) % groups_per_head) * kKeys;
            const std::int64_t k1 = std::min(k0 + kKeys, stop);
            std::fill(dk.begin(), dk.end(), 0.0);
            std::fill(dv.begin(), dv.end(), 0.0);
            for (int h = hk * shape.group; h < (hk + 1) * shape.group; ++h) {
                for (std::int64_t t = k0; t < stop; ++t) {
                    const float* q = x.q.row(t, h);
                    const float* dout = x.dout.row(t, h);
                    const double row_lse = lse[shape.lse_index(t, h)];
                    const double row_delta = delta[shape.lse_index(t, h)];
                    const std::int64_t last = std::min(k1 - 1, t);  // causal: key <= query
                    for (std::int64_t key = k0; key <= last; ++key) {
                        const double prob =
                            std::exp(shape.scale * dot64(q, x.k.row(key, hk), dim) - row_lse);
                        const double ds = prob * (dot64(dout, x.v.row(key, hk), dim) - row_delta);
                        axpy64(dv.data() + (key - k0) * dim, prob, dout, dim);
                        axpy64(dk.data() + (key - k0) * dim, shape.scale * ds, q, dim);
                    }
                }
            }
            for (std::int64_t key = k0; key < k1; ++key) {
                std::copy_n(dk.data() + (key - k0) * dim, dim,
                            grads.dk.data() + shape.kv_row(key, hk));
                std::copy_n(dv.data() + (key - k0) * dim, dim,
                            grads.dv.data() + shape.kv_row(key, hk));
            }
        }
    });
    return grads;
}

}  // namespace moba::ref
