// Naive MoBA backward (SEMANTICS.md §3) with the selection fixed. Three kernels:
//   delta_kernel: Delta[h, i] = dout[i,h]·out[i,h]                    one warp per (i, h)
//   dq_kernel:    dq[i,h] = scale * sum_j p_ij (dout·v_j - Delta) k_j   one warp per (i, h)
//   dkdv_kernel:  dk, dv of key j gathered over the queries that attend it, summed over the
//                 group's query heads                                 one warp per (j, hk)
// with p_ij = exp(scale * q_i·k_j - lse_i). Gathering instead of scattering with atomics makes
// every output deterministic. Cost: dq is the forward's loop with two dot products per key;
// dk/dv additionally scan, for each key and query head, every later query of the sequence
// (32 at a time, a binary search in each one's selection row) to find those that attend it.
// Measured on an H200 (bf16, one 64K-token sequence, 16 heads, D 128): full causal 10.7 s;
// block 64, top-8: 0.53 s.
#include <stdexcept>
#include <string>

#include "core/cuda_check.hpp"
#include "kernels/naive/common.cuh"
#include "kernels/naive/naive.hpp"

namespace moba::naive {
namespace {

using namespace detail;

template <typename T, int kSteps>
__global__ void delta_kernel(AttentionParams<T> p) {
    const Shape& s = p.shape;
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = s.total * s.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        const std::int64_t i = w % s.total;
        const int h = static_cast<int>(w / s.total);
        const std::int64_t offset = (i * s.heads_q + h) * s.head_dim;
        float dor[kSteps];
        float outr[kSteps];
        load_row(p.dout + offset, s.head_dim, lane, dor);
        load_row(p.out + offset, s.head_dim, lane, outr);
        const float delta = warp_dot(dor, outr);
        if (lane == 0) p.delta[h * s.total + i] = delta;
    }
}

// (P, dS) of one (query, key) pair from the scaled score minus lse and dO.v - Delta; the
// baseline rounds P before it meets dO or dS, and dS before it meets K or Q (SEMANTICS.md §5).
template <typename T>
__device__ __forceinline__ float2 prob_and_ds(const AttentionParams<T>& p, float logit,
                                              float dp_minus_delta) {
    float prob = expf(logit);
    if (p.round_like_dtype) prob = round_to_dtype<T>(prob);
    float ds = prob * dp_minus_delta;
    if (p.round_like_dtype) ds = round_to_dtype<T>(ds);
    return make_float2(prob, ds);
}

// The same keys as the forward: every selected block's keys up to the query itself.
template <typename T, int kSteps>
__device__ void dq_query(const AttentionParams<T>& p, std::int64_t i, int h, int lane) {
    const Shape& s = p.shape;
    const int b = find_sequence(p.cu, s.batch, i);
    const std::int64_t start = p.cu[b];
    const std::int64_t local = i - start;
    const std::int64_t kv_offset = static_cast<std::int64_t>(h / s.group) * s.head_dim;
    const std::int64_t kv_token_stride = static_cast<std::int64_t>(s.heads_kv) * s.head_dim;
    const std::int64_t q_offset = (i * s.heads_q + h) * s.head_dim;

    float qr[kSteps];
    float dor[kSteps];
    load_row(p.q + q_offset, s.head_dim, lane, qr);
    load_row(p.dout + q_offset, s.head_dim, lane, dor);
    const float lse = p.lse[h * s.total + i];
    const float delta = p.delta[h * s.total + i];
    float acc[kSteps] = {};  // sum of ds * k; the scale is applied once at the end

    const std::int32_t* row = p.sel + (i * s.heads_q + h) * s.slots;
    for_each_attended_key(s, row, local, [&](std::int64_t j) {
        const std::int64_t kv = (start + j) * kv_token_stride + kv_offset;
        float kr[kSteps];
        float vr[kSteps];
        load_row(p.k + kv, s.head_dim, lane, kr);
        load_row(p.v + kv, s.head_dim, lane, vr);
        const float ds =
            prob_and_ds<T>(p, s.scale * mma_dot<T>(p.round_like_dtype, qr, kr) - lse,
                               mma_dot<T>(p.round_like_dtype, dor, vr) - delta).y;
#pragma unroll
        for (int r = 0; r < kSteps; ++r) acc[r] = fmaf(ds, kr[r], acc[r]);
    });
#pragma unroll
    for (int r = 0; r < kSteps; ++r) acc[r] *= s.scale;
    store_row(p.dq + q_offset, s.head_dim, lane, acc);
}

template <typename T, int kSteps>
__global__ void dq_kernel(AttentionParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.shape.total * p.shape.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        dq_query<T, kSteps>(p, w % p.shape.total, static_cast<int>(w / p.shape.total), lane);
    }
}

// Whether an ascending selection row (-1 padding at its end) lists block blk >= 0.
// Binary search for the first entry that is padding or >= blk.
__device__ __forceinline__ bool row_selects(const std::int32_t* row, int slots, int blk) {
    int lo = 0;
    int hi = slots;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        const std::int32_t entry = row[mid];
        if (entry >= 0 && entry < blk) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < slots && row[lo] == blk;
}

// dk, dv of key token j (packed) and kv head hk: query i attends j iff i >= j in the same
// sequence and sel(i, h) lists j's block.
template <typename T, int kSteps>
__device__ void dkdv_key(const AttentionParams<T>& p, std::int64_t j, int hk, int lane) {
    const Shape& s = p.shape;
    const int b = find_sequence(p.cu, s.batch, j);
    const std::int64_t start = p.cu[b];
    const std::int64_t len = p.cu[b + 1] - start;
    const std::int64_t local = j - start;
    const int blk = static_cast<int>(local / s.block);
    const std::int64_t kv_offset = (j * s.heads_kv + hk) * s.head_dim;

    float kr[kSteps];
    float vr[kSteps];
    load_row(p.k + kv_offset, s.head_dim, lane, kr);
    load_row(p.v + kv_offset, s.head_dim, lane, vr);
    float dk[kSteps] = {};  // sum of ds * q; the scale is applied once at the end
    float dv[kSteps] = {};

    for (int g = 0; g < s.group; ++g) {
        const int h = hk * s.group + g;
        // Lane l tests query local0 + l; the matches are then processed one by one by the
        // whole warp, in increasing query order.
        for (std::int64_t local0 = local; local0 < len; local0 += kWarp) {
            const std::int64_t mine = start + local0 + lane;
            const bool attends =
                local0 + lane < len &&
                row_selects(p.sel + (mine * s.heads_q + h) * s.slots, s.slots, blk);
            for (unsigned todo = __ballot_sync(kFullMask, attends); todo != 0; todo &= todo - 1) {
                const std::int64_t i = start + local0 + (__ffs(static_cast<int>(todo)) - 1);
                const std::int64_t q_offset = (i * s.heads_q + h) * s.head_dim;
                float qr[kSteps];
                float dor[kSteps];
                load_row(p.q + q_offset, s.head_dim, lane, qr);
                load_row(p.dout + q_offset, s.head_dim, lane, dor);
                const float2 pds =
                    prob_and_ds<T>(p, s.scale * mma_dot<T>(p.round_like_dtype, qr, kr) - p.lse[h * s.total + i],
                                   mma_dot<T>(p.round_like_dtype, dor, vr) - p.delta[h * s.total + i]);
                const float prob = pds.x;
                const float ds = pds.y;
#pragma unroll
                for (int r = 0; r < kSteps; ++r) {
                    dv[r] = fmaf(prob, dor[r], dv[r]);
                    dk[r] = fmaf(ds, qr[r], dk[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kSteps; ++r) dk[r] *= s.scale;
    store_row(p.dk + kv_offset, s.head_dim, lane, dk);
    store_row(p.dv + kv_offset, s.head_dim, lane, dv);
}

// Consecutive warps take consecutive keys of one kv head, so a block's warps share the
// query rows they gather.
template <typename T, int kSteps>
__global__ void dkdv_kernel(AttentionParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.shape.total * p.shape.heads_kv;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        dkdv_key<T, kSteps>(p, w % p.shape.total, static_cast<int>(w / p.shape.total), lane);
    }
}

void launch_backward(const AttentionArgs& args, bool round_like_dtype) {
    const Problem& problem = args.problem;
    detail::check_problem(problem);
    if (args.workspace == nullptr) {
        throw std::invalid_argument("naive backward needs a workspace of " +
                                    std::to_string(attention_workspace_bytes(problem)) + " bytes");
    }
    dispatch(problem.dtype, problem.head_dim, [&](auto tag, auto steps) {
        using T = decltype(tag);
        constexpr int kSteps = decltype(steps)::value;
        const AttentionParams<T> p = make_attention_params<T>(args, round_like_dtype);
        const unsigned query_blocks = grid_blocks(p.shape.total * p.shape.heads_q, kWarpsPerBlock);
        delta_kernel<T, kSteps><<<query_blocks, kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
        dq_kernel<T, kSteps><<<query_blocks, kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
        dkdv_kernel<T, kSteps><<<grid_blocks(p.shape.total * p.shape.heads_kv, kWarpsPerBlock),
                                 kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace

void backward(const AttentionArgs& args) { launch_backward(args, false); }
void baseline_backward(const AttentionArgs& args) { launch_backward(args, true); }

}  // namespace moba::naive
