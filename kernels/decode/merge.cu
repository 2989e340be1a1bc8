// The merge: per (new token, head), its partials (m_k, l_k, o_k) combined by log-sum-exp,
// M = max m_k, L = sum l_k e^(m_k - M), out = sum o_k e^(m_k - M) / L, lse = M + ln L.
// One CTA per (token, head): at long caches a dense row has thousands of partials and the batch
// few rows, so four warps take interleaved runs of 32 partials, each lane one partial's weight,
// then the run's D-slices four loads at a time; the warps' sums are added in warp order. Every
// sum has a fixed order: out and lse are bitwise the same whichever CTA computed which partial.
#include <cmath>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/decode/device.cuh"
#include "kernels/decode/launch.hpp"

namespace moba::split_decode::detail {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarp;
constexpr int kLoadsInFlight = 4;

template <typename T>
struct MergeParams {
    Batch batch;
    Plan plan;
    T* out;      // [total_q, Hq, D]
    float* lse;  // [Hq, total_q]
};

// The partials of one (row, head) as k = 0..count-1 in the fixed order, k -> slot arithmetic so
// any lane takes any k. A partial exists exactly where the attention wrote one (attention.cu
// lists rows by the same test). MoBA: k = s * chunks_per_block + c over the whole selection
// row; valid when block b = sel[s] is one (not -1 padding) and its chunk c starts at or before
// the token, b * Bs + c * span <= pos; other slots hold stale workspace. Dense: units
// 0..pos/span, all valid.
struct Partials {
    const Batch& b;
    const Plan& plan;
    const Request& req;
    std::int64_t row;
    int h;
    int t;
    int pos;
    const std::int32_t* row_sel;
    int count;

    __device__ Partials(const Batch& batch, const Plan& p, const Request& r, std::int64_t row_, int head)
        : b(batch), plan(p), req(r), row(row_), h(head), t(static_cast<int>(row_ - r.q_start)),
          pos(r.first_pos + t),
          row_sel(p.dense ? nullptr : p.sel + (row_ * batch.heads_q + head) * batch.slots),
          count(p.dense ? pos / p.span + 1 : batch.slots * p.chunks_per_block) {}

    __device__ std::int64_t slot(int k) const {  // in bounds for every k < count
        return plan.dense ? dense_partial(b, plan, req, t, h, k)
                          : moba_partial(b, plan, row, h, k / plan.chunks_per_block,
                                         k % plan.chunks_per_block);
    }
    __device__ bool valid(int k) const {
        if (plan.dense) return true;
        const std::int32_t blk = row_sel[k / plan.chunks_per_block];
        return blk >= 0 && static_cast<std::int64_t>(blk) * b.block +
                                   static_cast<std::int64_t>(k % plan.chunks_per_block) * plan.span <=
                               pos;
    }
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) merge_partials(MergeParams<T> p) {
    constexpr int kE = D / kWarp;
    __shared__ float warp_m[kWarps];
    __shared__ float warp_l[kWarps];
    __shared__ __align__(16) float warp_o[kWarps][D];
    const Batch& b = p.batch;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % kWarp;
    const int warp = tid / kWarp;
    for (std::int64_t item = blockIdx.x; item < b.total_q * b.heads_q; item += gridDim.x) {
        const std::int64_t row = item / b.heads_q;  // neighbouring CTAs: heads of one row
        const int h = static_cast<int>(item % b.heads_q);
        const Request req = request_of_row(b, row);
        const Partials parts(b, p.plan, req, row, h);
        float m_max = -INFINITY;  // a max: exact in any order
        for (int k = tid; k < parts.count; k += kThreads)
            if (parts.valid(k)) m_max = fmaxf(m_max, p.plan.partial_ml[parts.slot(k)].x);
#pragma unroll
        for (int offset = kWarp / 2; offset > 0; offset /= 2)
            m_max = fmaxf(m_max, __shfl_xor_sync(kFullMask, m_max, offset));
        if (lane == 0) warp_m[warp] = m_max;
        __syncthreads();
        m_max = warp_m[0];
        for (int w = 1; w < kWarps; ++w) m_max = fmaxf(m_max, warp_m[w]);

        float l_sum = 0.0f;  // this lane's partials
        float o[kE] = {};    // this lane's D slice
        for (int first = warp * kWarp; first < parts.count; first += kThreads) {
            const int k = min(first + lane, parts.count - 1);
            const bool ok = first + lane < parts.count && parts.valid(k);
            const std::int64_t slot = parts.slot(k);
            float weight = 0.0f;  // 0: no partial, whatever its slot holds
            if (ok) {
                const float2 ml = p.plan.partial_ml[slot];
                weight = expf(ml.x - m_max);
                l_sum = fmaf(ml.y, weight, l_sum);
            }
            const int run = min(kWarp, parts.count - first);
            for (int j = 0; j < run; j += kLoadsInFlight) {
                float part[kLoadsInFlight][kE];
                float w_of[kLoadsInFlight];
#pragma unroll
                for (int u = 0; u < kLoadsInFlight; ++u) {
                    const int src = min(j + u, run - 1);
                    w_of[u] = j + u < run ? __shfl_sync(kFullMask, weight, src) : 0.0f;
                    const long long at = __shfl_sync(kFullMask, static_cast<long long>(slot), src);
                    // A zero weight is a slot no chunk wrote (or one that adds nothing): never
                    // read it (compute-sanitizer initcheck), its value would be discarded anyway.
                    if (w_of[u] != 0.0f) {
                        load_floats<kE>(p.plan.partial_o + at * D + lane * kE, part[u]);
                    } else {
#pragma unroll
                        for (int e = 0; e < kE; ++e) part[u][e] = 0.0f;
                    }
                }
#pragma unroll
                for (int u = 0; u < kLoadsInFlight; ++u)
#pragma unroll
                    for (int e = 0; e < kE; ++e)
                        o[e] = fmaf(w_of[u], w_of[u] != 0.0f ? part[u][e] : 0.0f, o[e]);
            }
        }
#pragma unroll
        for (int offset = kWarp / 2; offset > 0; offset /= 2)
            l_sum += __shfl_xor_sync(kFullMask, l_sum, offset);
        store_floats<kE>(&warp_o[warp][lane * kE], o);
        if (lane == 0) warp_l[warp] = l_sum;
        __syncthreads();
        if (warp == 0) {
            float total[kE] = {};
            float l_total = 0.0f;
            for (int w = 0; w < kWarps; ++w) {
                float part[kE];
                load_floats<kE>(&warp_o[w][lane * kE], part);
#pragma unroll
                for (int e = 0; e < kE; ++e) total[e] += part[e];
                l_total += warp_l[w];
            }
#pragma unroll
            for (int e = 0; e < kE; ++e) total[e] /= l_total;
            store_as<T, kE>(p.out + (row * b.heads_q + h) * D + lane * kE, total);
            if (lane == 0) p.lse[h * b.total_q + row] = m_max + logf(l_total);
        }
        __syncthreads();  // warp_m, warp_l, warp_o are free for the next item
    }
}

}  // namespace

void launch_merge(const DecodeArgs& args, const Plan& plan) {
    dispatch_tensor_core(args.cache, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int D = decltype(dim)::value;
        const MergeParams<T> p{make_batch(args), plan, static_cast<T*>(args.out), args.lse};
        merge_partials<T, D><<<grid_for(args.total_q * args.cache.heads_q, 1), kThreads, 0,
                               args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::split_decode::detail
