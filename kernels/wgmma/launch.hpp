// Host-side pieces shared by the wgmma launchers: dense_forward.cu (the causal kernel, dense and
// own-block modes) and moba_forward.cu (the MoBA forward built on it); dense_backward.cu (the dQ
// kernel, dense and own-block modes) and moba_backward.cu (the MoBA backward built on it).
#pragma once

#include <cstdint>

#include <cuda.h>  // CUtensorMap

#include "core/cuda_check.hpp"
#include "kernels/kernel_api.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/launch.hpp"      // persistent_ctas
#include "kernels/moba/wave_items.cuh"  // wave_work
#include "kernels/wgmma/l2_sections.hpp"

namespace moba::wgmma::detail {

// The bytes an L2 stream of the dense kernels reads (l2_sections.hpp): two tensors (K and V, or
// Q and dO) of `heads` heads over the longest sequence.
inline std::int64_t stream_bytes(const Problem& problem, int heads) {
    return 2 * static_cast<std::int64_t>(problem.max_seqlen()) * problem.head_dim *
           static_cast<std::int64_t>(dtype_bytes(problem.dtype)) * heads;
}

// Query heads per L2 section of the dense causal and dQ kernels: a stream is one kv head's K and
// V, shared by its group's query heads.
inline int kv_section_heads(const Problem& problem) {
    return l2_section_heads(stream_bytes(problem, 1), problem.group(), problem.heads_q);
}

// Launches the causal kernel on args.stream for a problem dense_can_implement accepts (throws
// moba::CudaError on a failed launch). acc == nullptr: dense mode, writes args.out and args.lse.
// Otherwise the own-block pass: every row of acc's head pass over its own MoBA block up to
// itself, into *acc.
void launch_causal(const AttentionArgs& args, const sparse::Accumulator* acc);

// The MoBA backward's own-block dQ pass over query heads [head0, head0 + heads): into dq_acc
// ([total, heads, D] fp32, unscaled) when the sparse waves follow, else args.dq.
struct OwnBlockDq {
    float* dq_acc;
    int head0;
    int heads;
};

// Launches the dQ kernel (dq_kernel.cuh) on args.stream, reading the row statistics `stats`
// (kernels/moba/row_stats.hpp). own == nullptr: dense, every row over keys 0 .. itself, into
// args.dq. Otherwise the own-block pass *own. Throws moba::CudaError on a failed launch.
void launch_dq(const AttentionArgs& args, const float2* stats, const OwnBlockDq* own);

// A wave kernel (the forward's wave_kernel.cuh, the backward's dq_wave_kernel.cuh) over the
// waves of `lists`, one persistent launch per wave in wave order on `stream`, with as many CTAs
// of `threads` threads and `smem` bytes of dynamic shared memory as are resident at once.
template <typename Kernel, typename Params>
void launch_per_wave(Kernel kernel, int threads, int smem, const CUtensorMap& k_map, const CUtensorMap& v_map,
                     const Params& params, const sparse::BlockLists& lists, cudaStream_t stream) {
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const int ctas = sparse::detail::persistent_ctas(reinterpret_cast<const void*>(kernel), threads, smem);
    for (int wave = 0; wave < lists.waves; ++wave) {
        kernel<<<ctas, threads, smem, stream>>>(k_map, v_map, params, sparse::detail::wave_work(lists, wave));
        MOBA_CHECK_LAUNCH();
    }
}

}  // namespace moba::wgmma::detail
