// Host helpers of the tiled_mma forward that the wgmma MoBA forward shares (it reuses tiled_mma's
// accumulator layout and finalize kernel): the kernel parameters from the call's arguments, and
// the finalize launch (out = O / l, lse from (m, l)). Compiled by nvcc: it launches a kernel.
#pragma once

#include <algorithm>
#include <cstdint>

#include "harness/cuda_check.hpp"
#include "kernels/kernel_api.hpp"
#include "kernels/tiled_mma/forward_kernels.cuh"

namespace moba::tiled_mma::detail {

// acc_o / acc_ml: the MoBA fp32 accumulator (null for the dense mode, which writes out and lse).
template <typename T>
ForwardParams<T> make_forward_params(const AttentionArgs& args, float* acc_o, float2* acc_ml) {
    const Problem& problem = args.problem;
    const ForwardShape shape{problem.batch(),
                             problem.heads_q,
                             problem.heads_kv,
                             problem.group(),
                             problem.block,
                             problem.total_tokens(),
                             static_cast<float>(problem.scale() * 1.4426950408889634)};
    return {shape,
            args.cu_seqlens,
            static_cast<const T*>(args.q),
            static_cast<const T*>(args.k),
            static_cast<const T*>(args.v),
            static_cast<T*>(args.out),
            args.lse,
            acc_o,
            acc_ml};
}

// One thread per 4 elements of the accumulator.
template <typename T, int kD>
void launch_finalize(const Problem& problem, const ForwardParams<T>& params, cudaStream_t stream) {
    const std::int64_t items = problem.lse_elems() * (kD / 4);
    const int threads = 256;
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((items + threads - 1) / threads, 1 << 20));
    finalize<T, kD><<<blocks, threads, 0, stream>>>(params);
    MOBA_CHECK_LAUNCH();
}

}  // namespace moba::tiled_mma::detail
