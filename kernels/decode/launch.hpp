// The launchers of split_decode's kernels, one per file, in the order a step runs them
// (split_decode.cu strings them together). Each dispatches the dtype / head dim itself,
// launches on args.stream and checks the launch. Arguments are already checked.
#pragma once

#include <cstdint>

#include "kernels/decode/layout.hpp"
#include "kernels/decode/params.cuh"
#include "kernels/kernel_api.hpp"

namespace moba::split_decode::detail {

// means.cu: the kept block means (prepare).
void launch_means(const DecodeArgs& args, const MobaLayout& layout);

// gating.cu: scores of past blocks against the means, then the top-k rows into args.sel.
void launch_gating(const DecodeArgs& args, const MobaLayout& layout);

// union.cu: per (request, kv head) the ascending union of the blocks its rows select; then the
// work-item prefix over (request, kv head) of either plan (and the dense partial bases).
void launch_unions(const DecodeArgs& args, const MobaLayout& layout);
void launch_plan(const DecodeArgs& args, const Plan& plan);

// attention.cu: every work item's partial softmax, on a persistent grid of at most max_items.
void launch_attention(const DecodeArgs& args, const Plan& plan, std::int64_t max_items);

// merge.cu: each (token, head)'s partials combined into out and lse.
void launch_merge(const DecodeArgs& args, const Plan& plan);

}  // namespace moba::split_decode::detail
