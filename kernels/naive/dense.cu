// naive_dense: full causal attention through the naive kernels. The problem is re-blocked so
// that each sequence is one block (block = longest sequence, top-k 1) and every query's
// selection is {0}: its own block, i.e. every key j <= i. A dense baseline that needs no
// L x L buffer, at the naive kernels' speed.
#include <cuda_runtime_api.h>

#include "core/cuda_check.hpp"
#include "kernels/naive/naive.hpp"

namespace moba::naive {
namespace {

Problem one_block_per_sequence(Problem p) {
    p.block = p.max_seqlen();
    p.topk = 1;
    return p;
}

std::size_t selection_bytes(const Problem& p) {
    // 256-byte aligned so the kernels' own workspace that follows stays aligned.
    const std::size_t bytes = static_cast<std::size_t>(p.lse_elems()) * sizeof(std::int32_t);
    return (bytes + 255) / 256 * 256;
}

AttentionArgs dense_args(const AttentionArgs& args) {
    AttentionArgs a = args;
    a.problem = one_block_per_sequence(args.problem);
    auto* sel = static_cast<std::int32_t*>(args.workspace);
    // All zeros: block 0, the whole sequence, for every (token, head).
    MOBA_CUDA_CALL(cudaMemsetAsync(sel, 0, static_cast<std::size_t>(a.problem.lse_elems()) * sizeof(std::int32_t),
                                   args.stream));
    a.sel = sel;
    a.workspace = static_cast<char*>(args.workspace) + selection_bytes(args.problem);
    return a;
}

}  // namespace

std::size_t dense_workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    return selection_bytes(problem) + attention_workspace_bytes(one_block_per_sequence(problem));
}

void dense_forward(const AttentionArgs& args) { forward(dense_args(args)); }

void dense_backward(const AttentionArgs& args) { backward(dense_args(args)); }

}  // namespace moba::naive
