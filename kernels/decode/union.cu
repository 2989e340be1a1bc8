// The work plan of a step.
// union_blocks: per (request, kv head), the blocks any of its new tokens selects with any head
// of the group, ascending: the blocks the attention reads, each once for the whole group. A
// shared-memory bitmap of 64K blocks (8 KiB) per pass over the selection rows, so any cache
// length works; compaction in block order by a CTA prefix sum, so the list is deterministic.
// plan_items: one CTA turns the per-(request, kv head) unit counts into the prefix of work items
// (MoBA: union blocks * chunks per block; dense: units of the cache), and for the dense plan the
// first partial of each request. The attention and merge find their work by binary search in it.
#include "core/cuda_check.hpp"
#include "kernels/decode/device.cuh"
#include "kernels/decode/launch.hpp"

namespace moba::split_decode::detail {
namespace {

constexpr int kUnionThreads = 256;
constexpr int kBitmapWords = 2048;
constexpr int kBitmapBlocks = kBitmapWords * 32;
constexpr int kPlanThreads = 256;

__global__ void __launch_bounds__(kUnionThreads)
    union_blocks(Batch b, const std::int32_t* sel, std::int32_t* list, std::int32_t* count) {
    __shared__ unsigned bitmap[kBitmapWords];
    __shared__ int scratch[kUnionThreads / kWarp];
    const int tid = static_cast<int>(threadIdx.x);
    const int row_entries = b.group * b.slots;  // the group's heads are adjacent in a sel row
    for (int rg = static_cast<int>(blockIdx.x); rg < b.batch * b.heads_kv;
         rg += static_cast<int>(gridDim.x)) {
        const int g = rg % b.heads_kv;
        const Request req = request(b, rg / b.heads_kv);
        const int n_blocks = ceil_div(req.k_len, b.block);
        std::int32_t* out = list + union_base(b, req.index, g, n_blocks);
        const std::int64_t entries = static_cast<std::int64_t>(req.q_len) * row_entries;
        int found = 0;
        for (int first = 0; first < n_blocks; first += kBitmapBlocks) {
            const int span = min(n_blocks - first, kBitmapBlocks);
            __syncthreads();  // every thread is done with the previous pass's bitmap
            for (int w = tid; w < kBitmapWords; w += kUnionThreads) bitmap[w] = 0u;
            __syncthreads();
            for (std::int64_t e = tid; e < entries; e += kUnionThreads) {
                const std::int64_t row = req.q_start + e / row_entries;
                const std::int32_t blk =
                    sel[(row * b.heads_q + g * b.group) * b.slots + e % row_entries];
                // -1 padding and anything outside the cache are no block of the union.
                if (blk >= first && blk < first + span) {
                    const int bit = blk - first;
                    atomicOr(&bitmap[bit >> 5], 1u << (bit & 31));
                }
            }
            __syncthreads();
            const int words = ceil_div(span, 32);
            for (int w0 = 0; w0 < words; w0 += kUnionThreads) {
                const int w = w0 + tid;
                unsigned word = w < words ? bitmap[w] : 0u;
                int total = 0;
                int at = found + block_exclusive_scan<kUnionThreads>(__popc(word), scratch, &total);
                while (word != 0u) {
                    const int bit = __ffs(static_cast<int>(word)) - 1;
                    out[at++] = first + w * 32 + bit;
                    word &= word - 1;
                }
                found += total;
            }
        }
        if (tid == 0) count[rg] = found;
    }
}

__global__ void __launch_bounds__(kPlanThreads) plan_items(Batch b, Plan plan) {
    __shared__ std::int64_t scratch[kPlanThreads / kWarp];
    const int tid = static_cast<int>(threadIdx.x);
    const int groups = b.batch * b.heads_kv;
    std::int64_t items = 0;
    for (int first = 0; first < groups; first += kPlanThreads) {
        const int rg = first + tid;
        std::int64_t units = 0;
        if (rg < groups) {
            units = plan.dense ? ceil_div(request(b, rg / b.heads_kv).k_len, plan.span)
                               : static_cast<std::int64_t>(plan.union_count[rg]) * plan.chunks_per_block;
        }
        std::int64_t total = 0;
        const std::int64_t before = block_exclusive_scan<kPlanThreads>(units, scratch, &total);
        if (rg < groups) plan.item_prefix[rg] = items + before;
        items += total;
    }
    if (tid == 0) plan.item_prefix[groups] = items;
    if (!plan.dense) return;
    // Dense partials: request r holds q_len * Hq * units of them, (token, head)-major.
    std::int64_t partials = 0;
    for (int first = 0; first < b.batch; first += kPlanThreads) {
        const int r = first + tid;
        std::int64_t count = 0;
        if (r < b.batch) {
            const Request req = request(b, r);
            count = static_cast<std::int64_t>(req.q_len) * b.heads_q * ceil_div(req.k_len, plan.span);
        }
        std::int64_t total = 0;
        const std::int64_t before = block_exclusive_scan<kPlanThreads>(count, scratch, &total);
        if (r < b.batch) plan.partial_base[r] = partials + before;
        partials += total;
    }
    if (tid == 0) plan.partial_base[b.batch] = partials;
}

}  // namespace

void launch_unions(const DecodeArgs& args, const MobaLayout& layout) {
    const Batch b = make_batch(args);
    union_blocks<<<grid_for(static_cast<std::int64_t>(b.batch) * b.heads_kv, 1), kUnionThreads, 0,
                   args.stream>>>(b, args.sel, layout.union_list.in<std::int32_t>(args.workspace),
                                  layout.union_count.in<std::int32_t>(args.workspace));
    MOBA_CHECK_LAUNCH();
}

void launch_plan(const DecodeArgs& args, const Plan& plan) {
    plan_items<<<1, kPlanThreads, 0, args.stream>>>(make_batch(args), plan);
    MOBA_CHECK_LAUNCH();
}

}  // namespace moba::split_decode::detail
