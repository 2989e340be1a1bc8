// Gating of the new tokens (SEMANTICS.md §2, §9): own block always, plus the top-(k-1) past
// blocks by the unscaled fp32 score q . kbar, equal scores to the lower block index, written
// ascending with -1 padding.
// score_blocks: one CTA per (token, kv head, 256 past blocks); each block mean is read once for
// all the group's heads (the means are the gating's bytes, Hkv * D * 4 per block and token),
// eight blocks per warp step summed by the transposed reduction, whose totals do not depend on
// a block's place in the step (device.cuh), so equal means give equal scores.
// select_rows: one CTA per (token, head): an exact radix select on the scores' order keys
// finds the (k-1)-th largest, then an ordered compaction writes the row. Needs no sort, no
// smem sized by the block count, and ranks ties by index alone.
// Scores are buffered for layout.score_rows tokens at a time (layout.cpp caps the buffer).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/decode/device.cuh"
#include "kernels/decode/launch.hpp"

namespace moba::split_decode::detail {
namespace {

constexpr int kScoreThreads = 128;
constexpr int kScoreSteps = 8;  // steps of 8 blocks per warp and item
constexpr int kBlocksPerItem = kScoreThreads / kWarp * kScoreSteps * 8;
constexpr int kSelectThreads = 256;
constexpr int kBins = 256;  // radix select: 8 bits per pass, 4 passes

template <typename T>
struct GateParams {
    Batch batch;
    const T* q;           // [total_q, Hq, D]
    const float* means;   // [total_k / Bs, Hkv, D]
    float* scores;        // [rows of this batch, Hq, stride]
    std::int32_t* sel;    // [total_q, Hq, slots]
    int stride;
    std::int64_t row0;    // first new-token row of this batch
    std::int64_t rows;
};

// Own block of new-token row `row`.
__device__ __forceinline__ int own_block(const Batch& b, std::int64_t row) {
    const Request req = request_of_row(b, row);
    return (req.first_pos + static_cast<int>(row - req.q_start)) / b.block;
}

template <typename T, int D>
__global__ void __launch_bounds__(kScoreThreads) score_blocks(GateParams<T> p) {
    constexpr int kE = D / kWarp;
    const Batch& b = p.batch;
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int warp = static_cast<int>(threadIdx.x) / kWarp;
    const int tiles = ceil_div(p.stride, kBlocksPerItem);
    const std::int64_t items = p.rows * b.heads_kv * tiles;
    for (std::int64_t item = blockIdx.x; item < items; item += gridDim.x) {
        const int tile = static_cast<int>(item % tiles);
        const std::int64_t rest = item / tiles;
        const int g = static_cast<int>(rest % b.heads_kv);
        const std::int64_t row = p.row0 + rest / b.heads_kv;
        const Request req = request_of_row(b, row);
        const int own = (req.first_pos + static_cast<int>(row - req.q_start)) / b.block;
        if (own <= b.topk - 1 || b.topk == 1) continue;  // select_rows needs no scores
        const float* means = p.means + (mean_slot(b, req.index, 0) * b.heads_kv + g) * D + lane * kE;
        float* scores = p.scores + ((row - p.row0) * b.heads_q + g * b.group) * p.stride;
        for (int step = 0; step < kScoreSteps; ++step) {
            const int first = tile * kBlocksPerItem + (warp * kScoreSteps + step) * 8;
            if (first >= own) break;
            float kbar[8][kE];
#pragma unroll
            for (int k = 0; k < 8; ++k) {  // blocks past the own one: a valid row, result unused
                const int blk = min(first + k, own - 1);
                load_floats<kE>(means + static_cast<std::int64_t>(blk) * b.heads_kv * D, kbar[k]);
            }
            const int blk = first + (lane >> 2);  // the block whose score this lane ends with
            for (int hh = 0; hh < b.group; ++hh) {
                float q[kE];
                load_as_float<T, kE>(p.q + ((row * b.heads_q) + g * b.group + hh) * D + lane * kE, q);
                float part[8];
#pragma unroll
                for (int k = 0; k < 8; ++k) part[k] = lane_dot<kE>(q, kbar[k]);
                const float score = transpose_reduce<8>(part, lane);
                if ((lane & 3) == 0 && blk < own)
                    scores[static_cast<std::int64_t>(hh) * p.stride + blk] = score;
            }
        }
    }
}

// Order key: larger score -> larger key; -0 and +0 equal, as the scores are.
__device__ __forceinline__ unsigned order_key(float score) {
    const unsigned u = score == 0.0f ? 0u : __float_as_uint(score);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename T>
__global__ void __launch_bounds__(kSelectThreads) select_rows(GateParams<T> p) {
    __shared__ int hist[kBins];
    __shared__ int scratch[kSelectThreads / kWarp];
    __shared__ unsigned found_prefix;
    __shared__ int found_remaining;
    const Batch& b = p.batch;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % kWarp;
    const int want = b.topk - 1;  // past blocks to take
    for (std::int64_t item = blockIdx.x; item < p.rows * b.heads_q; item += gridDim.x) {
        const std::int64_t row = p.row0 + item / b.heads_q;
        const int h = static_cast<int>(item % b.heads_q);
        const int own = own_block(b, row);
        std::int32_t* out = p.sel + (row * b.heads_q + h) * b.slots;
        if (own <= want) {  // blocks 0..own; own + 1 <= min(topk, blocks of r) <= slots
            for (int s = tid; s < b.slots; s += kSelectThreads) out[s] = s <= own ? s : -1;
            continue;
        }
        if (want == 0) {  // top-k 1: the own block alone
            for (int s = tid; s < b.slots; s += kSelectThreads) out[s] = s == 0 ? own : -1;
            continue;
        }
        const float* scores = p.scores + ((row - p.row0) * b.heads_q + h) * p.stride;
        // Radix select, most significant byte first: `prefix` holds the bytes of the want-th
        // largest key found so far, `remaining` how many of the keys matching it to take.
        unsigned prefix = 0;
        int remaining = want;
        for (int pass = 0; pass < 4; ++pass) {
            const int shift = 24 - 8 * pass;
            const unsigned high = pass == 0 ? 0u : ~0u << (shift + 8);
            hist[tid] = 0;  // kSelectThreads == kBins
            __syncthreads();
            for (int blk = tid; blk < own; blk += kSelectThreads) {
                const unsigned key = order_key(scores[blk]);
                if ((key & high) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1);
            }
            __syncthreads();
            if (tid < kWarp) {  // lane l sums bins 8l..8l+7; the lane holding the rank scans them
                int sum = 0;
#pragma unroll
                for (int k = 0; k < 8; ++k) sum += hist[lane * 8 + k];
                int at_or_above = sum;  // keys in this lane's bins and higher ones
#pragma unroll
                for (int offset = 1; offset < kWarp; offset <<= 1) {
                    const int higher = __shfl_down_sync(kFullMask, at_or_above, offset);
                    if (lane + offset < kWarp) at_or_above += higher;
                }
                int above = at_or_above - sum;
                if (above < remaining && remaining <= at_or_above) {
                    for (int k = 7; k >= 0; --k) {
                        const int bin = lane * 8 + k;
                        if (above + hist[bin] >= remaining) {
                            found_prefix = prefix | static_cast<unsigned>(bin) << shift;
                            found_remaining = remaining - above;
                            break;
                        }
                        above += hist[bin];
                    }
                }
            }
            __syncthreads();
            prefix = found_prefix;
            remaining = found_remaining;
        }
        // Take every key above the threshold and the first `remaining` equal to it, in index
        // order; that is want blocks, ascending, then the own block.
        int written = 0;
        int equal_seen = 0;
        for (int first = 0; first < own; first += kSelectThreads) {
            const int blk = first + tid;
            const unsigned key = blk < own ? order_key(scores[blk]) : 0u;
            const bool equal = blk < own && key == prefix;
            int equal_total = 0;
            const int rank = equal_seen + block_exclusive_scan<kSelectThreads>(equal ? 1 : 0, scratch, &equal_total);
            const bool take = (blk < own && key > prefix) || (equal && rank < remaining);
            int take_total = 0;
            const int at = written + block_exclusive_scan<kSelectThreads>(take ? 1 : 0, scratch, &take_total);
            if (take) out[at] = blk;
            written += take_total;
            equal_seen += equal_total;
        }
        if (tid == 0) out[want] = own;
        for (int s = want + 1 + tid; s < b.slots; s += kSelectThreads) out[s] = -1;
    }
}

}  // namespace

void launch_gating(const DecodeArgs& args, const MobaLayout& layout) {
    const Problem& cache = args.cache;
    dispatch_tensor_core(cache, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int D = decltype(dim)::value;
        GateParams<T> p{make_batch(args), static_cast<const T*>(args.q),
                        layout.means.in<float>(args.workspace), layout.scores.in<float>(args.workspace),
                        args.sel, layout.score_stride, 0, args.total_q};
        if (layout.score_rows == 0) {  // nothing to score: every row is blocks 0..own
            select_rows<T><<<grid_for(p.rows * cache.heads_q, 1), kSelectThreads, 0, args.stream>>>(p);
            MOBA_CHECK_LAUNCH();
            return;
        }
        const int tiles = (layout.score_stride + kBlocksPerItem - 1) / kBlocksPerItem;
        for (std::int64_t row0 = 0; row0 < args.total_q; row0 += layout.score_rows) {
            p.row0 = row0;
            p.rows = std::min(layout.score_rows, args.total_q - row0);
            score_blocks<T, D><<<grid_for(p.rows * cache.heads_kv * tiles, 1), kScoreThreads, 0,
                                 args.stream>>>(p);
            MOBA_CHECK_LAUNCH();
            select_rows<T><<<grid_for(p.rows * cache.heads_q, 1), kSelectThreads, 0, args.stream>>>(p);
            MOBA_CHECK_LAUNCH();
        }
    });
}

}  // namespace moba::split_decode::detail
