// Private helpers of the naive kernels: the parameter structs, dtype conversion, per-lane row
// registers and warp dot products, sequence lookup, the grid-stride warp loop and the
// (dtype, head dim) dispatch. Every kernel here runs one warp per work item with the lanes
// splitting the head dim: lane l owns elements d = l + 32 * r for r < kSteps.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/dispatch.hpp"
#include "core/problem.hpp"
#include "kernels/kernel_api.hpp"

namespace moba::naive::detail {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreadsPerBlock = kWarp * kWarpsPerBlock;
constexpr unsigned kFullMask = 0xffffffffu;

// Throws std::invalid_argument with can_implement's reason when the problem is refused.
void check_problem(const Problem& problem);

// The shape as the device code reads it (a plain copy of what Problem derives).
struct Shape {
    std::int64_t total;  // packed tokens
    int batch;
    int heads_q;
    int heads_kv;
    int group;  // query heads per kv head
    int head_dim;
    int block;  // MoBA block size Bs
    int topk;
    int slots;  // width of a selection row
    float scale;
};

inline Shape make_shape(const Problem& problem) {
    return {problem.total_tokens(), problem.batch(),
            problem.heads_q,        problem.heads_kv,
            problem.group(),        problem.head_dim,
            problem.block,          problem.topk,
            problem.sel_slots(),    static_cast<float>(problem.scale())};
}

// Forward and backward read the same tensors; each kernel uses the pointers it needs.
template <typename T>
struct AttentionParams {
    Shape shape;
    const std::int32_t* cu;   // [B+1]
    const T* q;               // [total, Hq, D]
    const T* k;               // [total, Hkv, D]
    const T* v;               // [total, Hkv, D]
    const std::int32_t* sel;  // [total, Hq, slots]
    T* out;                   // [total, Hq, D]  written by forward, read by backward
    float* lse;               // [Hq, total]     written by forward, read by backward
    const T* dout;            // [total, Hq, D]
    T* dq;                    // [total, Hq, D]
    T* dk;                    // [total, Hkv, D]
    T* dv;                    // [total, Hkv, D]
    float* delta;             // [Hq, total]     backward workspace: rowsum(dout * out)
    // The same-precision baseline of SEMANTICS.md §5 (baseline_forward / baseline_backward): P and dS
    // rounded to T before their products, as a plain low-precision implementation stores them.
    bool round_like_dtype;
};

template <typename T>
AttentionParams<T> make_attention_params(const AttentionArgs& args, bool round_like_dtype) {
    return {make_shape(args.problem),           args.cu_seqlens,
            static_cast<const T*>(args.q),      static_cast<const T*>(args.k),
            static_cast<const T*>(args.v),      args.sel,
            static_cast<T*>(args.out),          args.lse,
            static_cast<const T*>(args.dout),   static_cast<T*>(args.dq),
            static_cast<T*>(args.dk),           static_cast<T*>(args.dv),
            static_cast<float*>(args.workspace), round_like_dtype};
}

// ---- dtype conversion: all math in fp32, stores round to nearest even ---------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
    return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

// x rounded to T's nearest value (T = float: x itself), kept in fp32.
template <typename T>
__device__ __forceinline__ float round_to_dtype(float x) {
    return to_float(from_float<T>(x));
}

// ---- one row of D elements spread over the lanes of a warp ---------------------------------
// Elements past D read as 0, so dot products over the padded row are exact.
template <int kSteps, typename T>
__device__ __forceinline__ void load_row(const T* row, int head_dim, int lane, float (&x)[kSteps]) {
#pragma unroll
    for (int r = 0; r < kSteps; ++r) {
        const int d = lane + kWarp * r;
        x[r] = d < head_dim ? to_float(row[d]) : 0.0f;
    }
}

template <int kSteps, typename T>
__device__ __forceinline__ void store_row(T* row, int head_dim, int lane,
                                          const float (&x)[kSteps]) {
#pragma unroll
    for (int r = 0; r < kSteps; ++r) {
        const int d = lane + kWarp * r;
        if (d < head_dim) row[d] = from_float<T>(x[r]);
    }
}

// Butterfly sum: every lane ends with the same bits (IEEE addition is commutative, so lanes
// l and l^offset compute the same sum at every step), which keeps branches on it warp-uniform.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
        x += __shfl_xor_sync(kFullMask, x, offset);
    return x;
}

// fp32 dot product of two lane-distributed rows; explicit fmaf so that the same inputs give
// the same bits wherever it is inlined (gating rescores blocks and must rank them identically).
template <int kSteps>
__device__ __forceinline__ float warp_dot(const float (&a)[kSteps], const float (&b)[kSteps]) {
    float partial = 0.0f;
#pragma unroll
    for (int r = 0; r < kSteps; ++r) partial = __fmaf_rn(a[r], b[r], partial);
    return warp_sum(partial);
}

// The same-precision baseline's tensor-core model (SEMANTICS.md §5.1; reference/common.hpp's
// dot_tc32) on lane-distributed rows, element d = lane + 32 r: per k-step of 16 elements (lanes
// 0-15, then 16-31, of each r) the step's products are summed in double (exact for these
// values) and added to the fp32 accumulator with rounding toward zero. Every lane ends with the
// same bits.
template <int kSteps>
__device__ __forceinline__ float warp_dot_tc32(const float (&a)[kSteps], const float (&b)[kSteps]) {
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < kSteps; ++r) {
        double step = static_cast<double>(a[r]) * static_cast<double>(b[r]);
#pragma unroll
        for (int offset = 8; offset > 0; offset /= 2) step += __shfl_xor_sync(kFullMask, step, offset);
        const double low = __shfl_sync(kFullMask, step, 0);
        const double high = __shfl_sync(kFullMask, step, 16);
        acc = __double2float_rz(static_cast<double>(acc) + low);
        acc = __double2float_rz(static_cast<double>(acc) + high);
    }
    return acc;
}

// The dot products an implementation takes from MMAs (scores, dP): the naive implementation's
// own fp32 warp_dot, or for the baseline of a 16-bit dtype the tensor-core model.
template <typename T, int kSteps>
__device__ __forceinline__ float mma_dot(bool baseline, const float (&a)[kSteps], const float (&b)[kSteps]) {
    if constexpr (!std::is_same_v<T, float>) {
        if (baseline) return warp_dot_tc32(a, b);
    }
    return warp_dot(a, b);
}

// ---- sequence lookup ----------------------------------------------------------------------
// Largest b in [0, n) with key(b) <= x, for key nondecreasing in b and key(0) <= x.
template <typename Key>
__device__ __forceinline__ int last_at_most(int n, std::int64_t x, Key key) {
    int lo = 0;
    int hi = n - 1;  // invariant: the answer lies in [lo, hi]
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (key(mid) <= x) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

// Sequence b holding packed token t: cu[b] <= t < cu[b+1].
__device__ __forceinline__ int find_sequence(const std::int32_t* cu, int batch, std::int64_t t) {
    return last_at_most(batch, t, [cu](int b) { return static_cast<std::int64_t>(cu[b]); });
}

// Block means live in kbar [kbar_slots, Hkv, D] fp32, block j of sequence b at slot
// kbar_base(b) + j with kbar_base(b) = cu[b] / Bs + b. The ranges do not overlap:
// kbar_base(b+1) - kbar_base(b) = floor(cu[b+1]/Bs) - floor(cu[b]/Bs) + 1
//                                 >= floor(L_b/Bs) + 1 >= ceil(L_b/Bs),
// and kbar_base(B) = total/Bs + B bounds them all, so no per-sequence offsets are stored.
__host__ __device__ __forceinline__ std::int64_t kbar_slots(std::int64_t total, int block,
                                                            int batch) {
    return total / block + batch;
}

__device__ __forceinline__ std::int64_t kbar_base(const std::int32_t* cu, int b, int block) {
    return static_cast<std::int64_t>(cu[b] / block) + b;
}

__device__ __forceinline__ std::int64_t min64(std::int64_t a, std::int64_t b) {
    return a < b ? a : b;
}

// Calls fn(j) for every sequence-local key j that the query at local position `local` attends:
// the keys up to the query itself (causal) of each block its selection row lists, in row order.
template <typename Fn>
__device__ __forceinline__ void for_each_attended_key(const Shape& s, const std::int32_t* row,
                                                      std::int64_t local, Fn&& fn) {
    for (int t = 0; t < s.slots; ++t) {
        const std::int32_t blk = row[t];
        if (blk < 0) continue;  // padding
        const std::int64_t k0 = static_cast<std::int64_t>(blk) * s.block;
        const std::int64_t k1 = min64(k0 + s.block, local + 1);  // empty for a future block
        for (std::int64_t j = k0; j < k1; ++j) fn(j);
    }
}

// ---- grid-stride loops --------------------------------------------------------------------
// Work counts can exceed the grid's 2^31-1 blocks (total * Hq warps), so kernels loop.
__device__ __forceinline__ std::int64_t first_warp() {
    return static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
}
__device__ __forceinline__ std::int64_t warp_stride() {
    return static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
}

inline unsigned grid_blocks(std::int64_t items, int items_per_block) {
    const std::int64_t blocks = (items + items_per_block - 1) / items_per_block;
    return static_cast<unsigned>(blocks < INT_MAX ? blocks : INT_MAX);
}

// ---- runtime (dtype, head dim) -> compile-time (T, kSteps) --------------------------------
// Calls f(T{}, std::integral_constant<int, kSteps>{}) with kSteps = 32-element row chunks per
// lane (1, 2, 4 or 8): the smallest capacity of 32, 64, 128 or 256 that holds the head dim.
// head_dim <= kMaxHeadDim is checked by check_problem before any launch.
template <typename F>
void dispatch(DType dtype, int head_dim, F&& f) {
    dispatch_dtype(DTypes<float, __half, __nv_bfloat16>{}, dtype, [&](auto tag) {
        dispatch_head_dim_up_to(HeadDims<32, 64, 128, 256>{}, head_dim, [&](auto capacity) {
            f(tag, std::integral_constant<int, decltype(capacity)::value / 32>{});
        });
    });
}


// ---- The selection row (SEMANTICS.md §2), shared by prefill gating and decode ------------------

// Candidate order: higher score first, the lower block index first among equal scores.
// A strict total order for non-NaN scores.
__device__ __forceinline__ bool ranks_before(float score_a, int block_a, float score_b, int block_b) {
    return score_a > score_b || (score_a == score_b && block_a < block_b);
}

// Writes the selection row of one (query, head) whose own block is `own`: the top `past` of the
// past blocks 0..own-1 by score_of(j) (the same bits on every lane), ascending, then `own`, -1
// padded to `slots`. Warp-uniform throughout.
// Passes over the past blocks: `bound` is the last block taken so far in candidate order
// (initially before everything); each pass keeps, among the blocks ranked after `bound`, the best
// 32 in a sorted list with entry r on lane r, then advances `bound` by `want`.
template <class ScoreOf>
__device__ void write_selection_row(std::int32_t* row, int own, int past, int slots, int lane,
                                    const ScoreOf& score_of) {
    if (past >= own) {
        // Every block up to the own one: own + 1 <= min(topk, blocks in sequence) <= slots.
        for (int t = lane; t < slots; t += kWarp) row[t] = t <= own ? t : -1;
        return;
    }
    // From here own > past, so the row is the past + 1 selected blocks.
    float bound_score = INFINITY;
    int bound_block = -1;
    for (int taken = 0; taken < past;) {
        const int want = min(kWarp, past - taken);  // <= own - taken blocks remain: list fills
        float list_score = -INFINITY;               // empty entry: ranks after every block
        int list_block = INT_MAX;
        for (int j = 0; j < own; ++j) {
            const float score = score_of(j);
            if (!ranks_before(bound_score, bound_block, score, j)) continue;  // taken before
            // The list is sorted, so the entries ranking before (score, j) are lanes 0..pos-1;
            // lanes from pos on shift up by one and lane pos takes (score, j).
            const int pos = __popc(__ballot_sync(kFullMask, ranks_before(list_score, list_block, score, j)));
            const float shifted_score = __shfl_up_sync(kFullMask, list_score, 1);
            const int shifted_block = __shfl_up_sync(kFullMask, list_block, 1);
            if (lane == pos) {
                list_score = score;
                list_block = j;
            } else if (lane > pos) {
                list_score = shifted_score;
                list_block = shifted_block;
            }
        }
        bound_score = __shfl_sync(kFullMask, list_score, want - 1);
        bound_block = __shfl_sync(kFullMask, list_block, want - 1);
        taken += want;
    }
    // Writing pass: the selected past blocks are those ranked at or before `bound`, written in
    // index order (ascending), then the own block (the largest index). With non-NaN scores
    // exactly `past` blocks qualify; the guard and the padding only matter for NaN scores, which
    // the order does not rank, and keep the writes inside the row and the row well formed.
    int slot = 0;
    for (int j = 0; j < own && slot < past; ++j) {
        if (!ranks_before(bound_score, bound_block, score_of(j), j)) {
            if (lane == 0) row[slot] = j;
            ++slot;
        }
    }
    if (lane == 0) row[slot] = own;
    for (int t = slot + 1 + lane; t < slots; t += kWarp) row[t] = -1;  // NaN scores only
}

}  // namespace moba::naive::detail
