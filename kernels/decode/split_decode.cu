// What split_decode accepts, the workspace it needs, and the order a step launches its kernels.
#include "kernels/decode/split_decode.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "kernels/decode/launch.hpp"
#include "kernels/decode/layout.hpp"
#include "kernels/support.hpp"

namespace moba::split_decode {
namespace {

using detail::DenseLayout;
using detail::MobaLayout;
using detail::Plan;

void refuse(const std::string& why) { throw std::invalid_argument("split_decode: " + why); }

// What every entry point needs: an accepted shape, the cache, the workspace, a usable block
// table. The per-request q_len (1 <= q_len <= k_len) live on the device: the caller's.
void check_cache(const DecodeArgs& args, std::size_t workspace) {
    if (const Support s = can_implement(args.cache); !s.ok) refuse(s.reason);
    const Problem& cache = args.cache;
    if (args.cu_k == nullptr || args.k == nullptr) refuse("cu_k and k must be given");
    if (workspace > 0 && args.workspace == nullptr)
        refuse(fmt::format("a workspace of {} bytes is needed", workspace));
    if (args.block_table != nullptr) {
        if (args.page_size <= 0) refuse(fmt::format("page size {} must be positive", args.page_size));
        const int pages = (cache.max_seqlen() + args.page_size - 1) / args.page_size;
        if (args.table_width < pages)
            refuse(fmt::format("block table width {} holds fewer than the {} pages of the longest cache",
                               args.table_width, pages));
    }
}

// A step also reads the new tokens and writes out and lse (and MoBA's sel).
void check_step(const DecodeArgs& args, std::size_t workspace, bool needs_sel) {
    check_cache(args, workspace);
    if (args.total_q < args.cache.batch())
        refuse(fmt::format("total_q {} is below the {} requests of the batch (each has a new token)",
                           args.total_q, args.cache.batch()));
    if (args.cu_q == nullptr || args.q == nullptr || args.v == nullptr || args.out == nullptr ||
        args.lse == nullptr)
        refuse("cu_q, q, v, out and lse must be given");
    if (needs_sel && args.sel == nullptr) refuse("MoBA decode needs sel (written with gate, read without)");
}

Plan moba_plan(const DecodeArgs& args, const MobaLayout& layout) {
    return {false,
            layout.span,
            layout.chunks_per_block,
            args.sel,
            layout.union_list.in<std::int32_t>(args.workspace),
            layout.union_count.in<std::int32_t>(args.workspace),
            layout.item_prefix.in<std::int64_t>(args.workspace),
            nullptr,
            layout.partial_ml.in<float2>(args.workspace),
            layout.partial_o.in<float>(args.workspace)};
}

Plan dense_plan(const DecodeArgs& args, const DenseLayout& layout) {
    return {true,
            layout.span,
            1,
            nullptr,
            nullptr,
            nullptr,
            layout.item_prefix.in<std::int64_t>(args.workspace),
            layout.partial_base.in<std::int64_t>(args.workspace),
            layout.partial_ml.in<float2>(args.workspace),
            layout.partial_o.in<float>(args.workspace)};
}

}  // namespace

Support can_implement(const Problem& cache) {
    return valid_bf16_or_fp16_d64_or_d128(cache, "split_decode");
}

std::size_t workspace_bytes(const Problem& cache, std::int64_t total_q) {
    if (!can_implement(cache).ok) return 0;
    return detail::moba_layout(cache, total_q).total_bytes;
}

std::size_t dense_workspace_bytes(const Problem& cache, std::int64_t total_q) {
    if (!can_implement(cache).ok) return 0;
    return detail::dense_layout(cache, total_q).total_bytes;
}

void prepare(const DecodeArgs& args) {
    // The means lead the workspace whatever total_q is; prepare reads nothing of the new tokens.
    const MobaLayout layout = detail::moba_layout(args.cache, std::max<std::int64_t>(args.total_q, 1));
    check_cache(args, layout.means.bytes);
    detail::launch_means(args, layout);
}

void decode(const DecodeArgs& args) {
    const MobaLayout layout = detail::moba_layout(args.cache, args.total_q);
    check_step(args, layout.total_bytes, true);
    if (args.gate) detail::launch_gating(args, layout);  // sel from the kept means
    detail::launch_unions(args, layout);                 // blocks per (request, kv head)
    const Plan plan = moba_plan(args, layout);
    detail::launch_plan(args, plan);                     // work-item prefix
    detail::launch_attention(args, plan, layout.max_items);
    detail::launch_merge(args, plan);
}

void dense_decode(const DecodeArgs& args) {
    const DenseLayout layout = detail::dense_layout(args.cache, args.total_q);
    check_step(args, layout.total_bytes, false);
    const Plan plan = dense_plan(args, layout);
    detail::launch_plan(args, plan);  // units per (request, kv head), partials per request
    detail::launch_attention(args, plan, layout.max_items);
    detail::launch_merge(args, plan);
}

}  // namespace moba::split_decode
