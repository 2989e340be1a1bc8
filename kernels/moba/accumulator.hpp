// The MoBA forward's fp32 accumulator, which both tensor-core backends (tiled_mma, wgmma) use:
// the own-block pass writes it, every sparse wave merges into it, and finalize turns it into
// out and lse. Also the one workspace carve of a MoBA forward: [O][(m, l)][block lists].
// It holds the rows of one head pass (head_passes.hpp), query heads [head0, head0 + heads):
//   O    [total, heads, D] fp32, unnormalised; row (token, h) at token * heads + h - head0
//   m, l [total, heads] float2: m in the log2 domain (scale * log2 e * s), l the row's exp-sum
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>
#include <vector_types.h>  // float2

#include "core/problem.hpp"

namespace moba::sparse {

struct Accumulator {
    float* o;
    float2* ml;
    int head0;  // the pass's first query head
    int heads;  // the pass's query heads (heads_q: the whole problem)
};

// O and (m, l) for passes of up to q_heads query heads, each 256-byte aligned; the block lists'
// workspace follows.
std::size_t accumulator_bytes(const Problem& problem, int q_heads);

struct ForwardWorkspace {
    Accumulator acc;
    void* lists;  // block_lists_workspace_bytes(problem, tile_rows) bytes
};

// [O][(m, l)][lists] out of `base` (accumulator_bytes(problem, q_heads) + the lists' bytes);
// acc covers query heads [0, q_heads) until the caller points it at a pass.
ForwardWorkspace carve_forward_workspace(const Problem& problem, int q_heads, void* base);

// For the accumulator's rows (its pass's heads): out = O / l in the dtype,
// lse = ln 2 * (m + log2 l), for bf16 / fp16 and head dims 64 / 128.
// One thread per 4 elements; launches on `stream` and checks the launch (throws
// moba::CudaError); throws std::invalid_argument for another dtype or head dim.
void finalize(const Problem& problem, const Accumulator& acc, void* out, float* lse,
              cudaStream_t stream);

// The MoBA backward's workspace, both backends': [row statistics (row_stats.hpp)][the dQ
// accumulator of one head pass: [total, pass query heads, D] fp32, none without past blocks]
// [block lists].
struct BackwardWorkspace {
    float2* stats;
    float* dq_acc;  // null without past blocks
    void* lists;
};

// The dQ accumulator's bytes (head_passes.hpp's pass width; 0 when the selection has no past
// blocks).
std::size_t dq_accumulator_bytes(const Problem& problem);

// The three regions out of `base`, in that order.
BackwardWorkspace carve_backward_workspace(const Problem& problem, void* base);

// The backward's dQ accumulator of a head pass (both backends' MoBA backward: the own-block
// pass stores, each sparse wave adds): dq_acc [total, heads, D] fp32, unscaled, over query heads
// [head0, head0 + heads). Writes dq = scale * dq_acc in the dtype for those heads' rows; same
// launch and errors as finalize.
void finalize_dq(const Problem& problem, const float* dq_acc, int head0, int heads, void* dq,
                 cudaStream_t stream);

}  // namespace moba::sparse
