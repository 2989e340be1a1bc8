// Naive gating (SEMANTICS.md §2): mean key of every block, then for every (query, head) its own block
// plus the top-(k-1) past blocks by the unscaled fp32 score q·kbar, the lower block index
// winning ties, written ascending with -1 padding.
// Cost: block_means reads K once (one thread per kbar element, serial over the block's
// tokens). select_blocks runs one warp per (query, head): nothing to score when k exceeds the
// past blocks; otherwise each pass scores every past block (a D-long dot product and a warp
// sum) keeping the best 32 not yet taken, so ceil((k-1)/32) passes plus one writing pass:
// two scorings of the past blocks for the usual k <= 33, n*k/32 in general.
// Measured on an H200 (bf16, one 64K-token sequence, 16 heads, D 128, block 64): top-8
// 64 ms, top-100 158 ms; full causal (nothing to score) 0.6 ms.
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/cuda_check.hpp"
#include "kernels/naive/common.cuh"
#include "kernels/naive/naive.hpp"

namespace moba::naive {
namespace {

using namespace detail;

template <typename T>
struct GatingParams {
    Shape shape;
    const std::int32_t* cu;  // [B+1]
    const T* q;              // [total, Hq, D]
    const T* k;              // [total, Hkv, D]
    float* kbar;             // [kbar_slots, Hkv, D] workspace (layout in common.cuh)
    std::int32_t* sel;       // [total, Hq, slots]
};

// kbar[slot, hk, d] = mean over the block's tokens of k[t, hk, d], summed in token order.
// One thread per element; consecutive threads take consecutive d (coalesced K reads).
template <typename T>
__global__ void block_means(GatingParams<T> p) {
    const Shape& s = p.shape;
    const std::int64_t items = kbar_slots(s.total, s.block, s.batch) * s.heads_kv * s.head_dim;
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         e < items; e += stride) {
        const int d = static_cast<int>(e % s.head_dim);
        const std::int64_t row = e / s.head_dim;
        const int hk = static_cast<int>(row % s.heads_kv);
        const std::int64_t slot = row / s.heads_kv;
        const int b =
            last_at_most(s.batch, slot, [&](int c) { return kbar_base(p.cu, c, s.block); });
        const std::int64_t start = p.cu[b];
        const std::int64_t len = p.cu[b + 1] - start;
        const std::int64_t t0 = (slot - kbar_base(p.cu, b, s.block)) * s.block;
        if (t0 >= len) continue;  // a slot between two sequences' blocks: never read
        const std::int64_t t1 = min64(t0 + s.block, len);
        float sum = 0.0f;
        for (std::int64_t t = t0; t < t1; ++t) {
            sum += to_float(p.k[((start + t) * s.heads_kv + hk) * s.head_dim + d]);
        }
        p.kbar[e] = sum / static_cast<float>(t1 - t0);
    }
}

// Unscaled score of block j; the same bits on every lane and on every call (warp_dot).
template <int kSteps>
__device__ __forceinline__ float block_score(const float (&qr)[kSteps], const float* kbar_seq,
                                             std::int64_t block_stride, int j, int head_dim,
                                             int lane) {
    float kr[kSteps];
    load_row(kbar_seq + j * block_stride, head_dim, lane, kr);
    return warp_dot(qr, kr);
}

// Writes the selection row of query token i, head h. Warp-uniform throughout.
template <typename T, int kSteps>
__device__ void select_query(const GatingParams<T>& p, std::int64_t i, int h, int lane) {
    const Shape& s = p.shape;
    const int b = find_sequence(p.cu, s.batch, i);
    const int own = static_cast<int>((i - p.cu[b]) / s.block);  // blocks 0..own-1 are past
    const int past = s.topk - 1;  // past blocks a query may add to its own
    std::int32_t* row = p.sel + (i * s.heads_q + h) * s.slots;

    if (past >= own) {
        write_selection_row(row, own, past, s.slots, lane, [](int) { return 0.0f; });  // no scores read
        return;
    }
    float qr[kSteps];
    load_row(p.q + (i * s.heads_q + h) * s.head_dim, s.head_dim, lane, qr);
    const int hk = h / s.group;
    const std::int64_t block_stride = static_cast<std::int64_t>(s.heads_kv) * s.head_dim;
    const float* kbar_seq = p.kbar + kbar_base(p.cu, b, s.block) * block_stride +
                            static_cast<std::int64_t>(hk) * s.head_dim;
    write_selection_row(row, own, past, s.slots, lane,
                        [&](int j) { return block_score(qr, kbar_seq, block_stride, j, s.head_dim, lane); });
}

// One warp per (query token, head); consecutive warps take consecutive tokens of one head so
// that neighbouring warps score against the same kbar rows.
template <typename T, int kSteps>
__global__ void select_blocks(GatingParams<T> p) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const std::int64_t items = p.shape.total * p.shape.heads_q;
    for (std::int64_t w = first_warp(); w < items; w += warp_stride()) {
        select_query<T, kSteps>(p, w % p.shape.total, static_cast<int>(w / p.shape.total), lane);
    }
}

}  // namespace

void gating(const GatingArgs& args) {
    const Problem& problem = args.problem;
    detail::check_problem(problem);
    if (args.workspace == nullptr) {
        throw std::invalid_argument("naive gating needs a workspace of " +
                                    std::to_string(gating_workspace_bytes(problem)) + " bytes");
    }
    dispatch(problem.dtype, problem.head_dim, [&](auto tag, auto steps) {
        using T = decltype(tag);
        constexpr int kSteps = decltype(steps)::value;
        const GatingParams<T> p{make_shape(problem),
                                args.cu_seqlens,
                                static_cast<const T*>(args.q),
                                static_cast<const T*>(args.k),
                                static_cast<float*>(args.workspace),
                                args.sel};
        const std::int64_t means = kbar_slots(p.shape.total, p.shape.block, p.shape.batch) *
                                   p.shape.heads_kv * p.shape.head_dim;
        block_means<T>
            <<<grid_blocks(means, kThreadsPerBlock), kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
        select_blocks<T, kSteps><<<grid_blocks(p.shape.total * p.shape.heads_q, kWarpsPerBlock),
                                   kThreadsPerBlock, 0, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::naive
