// Naive MoBA forward (SEMANTICS.md §3): out = softmax(scale * q·k) · v over the keys j <= i of the
// query's sequence whose block the selection row lists; lse = log of the softmax's sum.
// One warp per (query token, query head), lanes splitting D; keys visited one at a time with
// an online softmax (running max, running sum, rescaled accumulator): fp32 for bf16/fp16
// inputs, double for fp32 inputs. fp32 inputs were the long suite's truth before the float64 GPU
// truth (reference/gpu/) replaced it: an fp32 running sum over 64K keys drifts by about 1e-5 in
// lse (measured against kernels that sum in tiles), as large as the lse tolerance, so fp32
// inputs accumulate in double.
// Cost per attended key: one D-long dot product with a 5-step warp sum, two expf, one
// D-long axpy; K/V come from L1/L2, since neighbouring warps walk the same keys.
// Measured on an H200 (bf16, one 64K-token sequence, 16 heads, D 128): full causal 3.7 s;
// block 64, top-8: 53 ms; block 64, top-100: 0.65 s.
#include <cmath>
#include <type_traits>

#include "core/cuda_check.hpp"
#include "kernels/naive/common.cuh"
#include "kernels/naive/naive.hpp"

namespace moba::naive {
namespace {

using namespace detail;

template <typename T, int kSteps>
__device__ void forward_query(const AttentionParams<T>& p, std::int64_t i, int h, int lane) {
    const Shape& s = p.shape;
    const int b = find_sequence(p.cu, s.batch, i);
    const std::int64_t start = p.cu[b];
    const std::int64_t local = i - start;
    const std::int64_t kv_offset = static_cast<std::int64_t>(h / s.group) * s.head_dim;
    const std::int64_t kv_token_stride = static_cast<std::int64_t>(s.heads_kv) * s.head_dim;
    const std::int64_t q_offset = (i * s.heads_q + h) * s.head_dim;

    float qr[kSteps];
    load_row(p.q + q_offset, s.head_dim, lane, qr);
    using Acc = std::conditional_t<std::is_same_v<T, float>, double, float>;
    Acc acc[kSteps] = {};
    Acc m = -INFINITY;  // running max of the scaled scores
    Acc l = 0.0f;       // running sum of exp(score - m)

    const std::int32_t* row = p.sel + (i * s.heads_q + h) * s.slots;
    for_each_attended_key(s, row, local, [&](std::int64_t j) {
        const std::int64_t kv = (start + j) * kv_token_stride + kv_offset;
        float kr[kSteps];
        load_row(p.k + kv, s.head_dim, lane, kr);
        const Acc score = static_cast<Acc>(s.scale * mma_dot<T>(p.round_like_dtype, qr, kr));
        const Acc m_new = m > score ? m : score;
        const Acc rescale = exp(m - m_new);  // 0 on the first key (m = -inf)
        const Acc prob = exp(score - m_new);
        l = l * rescale + prob;
        float vr[kSteps];
        load_row(p.v + kv, s.head_dim, lane, vr);
#pragma unroll
        for (int r = 0; r < kSteps; ++r) acc[r] = acc[r] * rescale + prob * vr[r];
        m = m_new;
    });

    // l >= 1: the own block is always selected and holds the query's own key.
    const Acc inv_l = Acc{1} / l;
    const float lse = static_cast<float>(m + log(l));
    float result[kSteps];
#pragma unroll
    for (int r = 0; r < kSteps; ++r) result[r] = static_cast<float>(acc[r] * inv_l);
    if (p.round_like_dtype) {
        // The baseline: a second pass with the row's final lse, out = sum of round(P) v.
#pragma unroll
        for (int r = 0; r < kSteps; ++r) result[r] = 0.0f;
        for_each_attended_key(s, row, local, [&](std::int64_t j) {
            const std::int64_t kv = (start + j) * kv_token_stride + kv_offset;
            float kr[kSteps];
            float vr[kSteps];
            load_row(p.k + kv, s.head_dim, lane, kr);
            load_row(p.v + kv, s.head_dim, lane, vr);
            const float prob = round_to_dtype<T>(expf(s.scale * mma_dot<T>(true, qr, kr) - lse));
#pragma unroll
            for (int r = 0; r < kSteps; ++r) result[r] = fmaf(prob, vr[r], result[r]);
        });
    }
    store_row(p.out + q_offset, s.head_dim, lane, result);
    if (lane == 0) p.lse[h * s.total + i] = lse;
}

// Consecutive warps take consecutive tokens of one head, so a block's warps share K/V reads.
template <typename T, int kSteps>
__global__ void forward_kernel(AttentionParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.shape.total * p.shape.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        forward_query<T, kSteps>(p, w % p.shape.total, static_cast<int>(w / p.shape.total), lane);
    }
}

void launch_forward(const AttentionArgs& args, bool round_like_dtype) {
    const Problem& problem = args.problem;
    detail::check_problem(problem);
    dispatch(problem.dtype, problem.head_dim, [&](auto tag, auto steps) {
        using T = decltype(tag);
        constexpr int kSteps = decltype(steps)::value;
        const AttentionParams<T> p = make_attention_params<T>(args, round_like_dtype);
        forward_kernel<T, kSteps><<<grid_blocks(p.shape.total * p.shape.heads_q, kWarpsPerBlock),
                                    kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace

void forward(const AttentionArgs& args) { launch_forward(args, false); }
void baseline_forward(const AttentionArgs& args) { launch_forward(args, true); }

}  // namespace moba::naive
