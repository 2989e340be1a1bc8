// Host side of the wgmma_dense backward (wgmma_dense.hpp): tiled_mma's row statistics
// (tiled_mma::dense_row_stats, into the workspace), then the dQ kernel (dq_kernel.cuh) and the
// dK/dV kernel (dkdv_kernel.cuh) on warpgroup MMA, both reading those statistics. All on
// args.stream.
#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/cuda_check.hpp"
#include "kernels/tiled_mma/backward.hpp"
#include "kernels/tiled_mma/launch.hpp"  // dispatch
#include "kernels/wgmma_dense/dkdv_kernel.cuh"
#include "kernels/wgmma_dense/dq_kernel.cuh"
#include "kernels/wgmma_dense/tensor_map.hpp"
#include "kernels/wgmma_dense/wgmma_dense.hpp"

namespace moba::wgmma_dense {
namespace {

// TMA maps of q and dout (boxes of row_box rows of one query head) and of k and v (key_box rows
// of one kv head).
struct BackwardMaps {
    CUtensorMap q, dout, k, v;
};

BackwardMaps backward_maps(const AttentionArgs& args, int row_box, int key_box) {
    const Problem& problem = args.problem;
    const std::int64_t total = problem.total_tokens();
    const int d = problem.head_dim;
    return {detail::make_tile_map(args.q, total, problem.heads_q, d, row_box),
            detail::make_tile_map(args.dout, total, problem.heads_q, d, row_box),
            detail::make_tile_map(args.k, total, problem.heads_kv, d, key_box),
            detail::make_tile_map(args.v, total, problem.heads_kv, d, key_box)};
}

template <typename T, int kD>
void launch_dq(const AttentionArgs& args) {
    using S = detail::TileShape<kD>;
    const Problem& problem = args.problem;
    const BackwardMaps maps = backward_maps(args, S::kBlockM, S::kBlockN);
    const double scale = problem.scale();
    const detail::DqParams params{args.cu_seqlens,
                                  static_cast<const float2*>(args.workspace),
                                  args.dq,
                                  problem.heads_q,
                                  problem.group(),
                                  static_cast<float>(scale),
                                  static_cast<float>(scale * 1.4426950408889634)};
    const auto kernel = detail::dq_kernel<T, kD>;
    constexpr int kSmem = static_cast<int>(detail::DqPlan<kD>::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const int max_tiles = (problem.max_seqlen() + S::kBlockM - 1) / S::kBlockM;
    const dim3 grid(static_cast<unsigned>(problem.heads_q), static_cast<unsigned>(max_tiles),
                    static_cast<unsigned>(problem.batch()));
    kernel<<<grid, detail::kThreads, kSmem, args.stream>>>(maps.q, maps.dout, maps.k, maps.v, params, max_tiles);
    MOBA_CHECK_LAUNCH();
}

template <typename T, int kD>
void launch_dkdv(const AttentionArgs& args) {
    using Plan = detail::DkdvPlan<kD>;
    const Problem& problem = args.problem;
    const BackwardMaps maps = backward_maps(args, Plan::kRows, Plan::kKeys);
    const double scale = problem.scale();
    const detail::DkdvParams params{args.cu_seqlens,
                                    static_cast<const float2*>(args.workspace),
                                    args.dk,
                                    args.dv,
                                    problem.heads_q,
                                    problem.heads_kv,
                                    problem.group(),
                                    static_cast<float>(scale),
                                    static_cast<float>(scale * 1.4426950408889634)};
    const auto kernel = detail::dkdv_kernel<T, kD>;
    constexpr int kSmem = static_cast<int>(Plan::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const int key_tiles = (problem.max_seqlen() + Plan::kKeys - 1) / Plan::kKeys;
    const dim3 grid(static_cast<unsigned>(problem.heads_kv), static_cast<unsigned>(key_tiles),
                    static_cast<unsigned>(problem.batch()));
    kernel<<<grid, detail::kThreads, kSmem, args.stream>>>(maps.q, maps.dout, maps.k, maps.v, params);
    MOBA_CHECK_LAUNCH();
}

}  // namespace

Support dense_backward_can_implement(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    return tiled_mma::dense_backward_can_implement(problem);
}

std::size_t dense_backward_workspace_bytes(const Problem& problem) {
    if (!dense_backward_can_implement(problem).ok) return 0;
    return tiled_mma::dense_backward_workspace_bytes(problem);
}

void dense_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (const Support s = dense_backward_can_implement(problem); !s.ok)
        throw std::invalid_argument("wgmma_dense backward: " + s.reason);
    tiled_mma::dense_row_stats(args);  // checks the workspace; leaves the statistics in it
    if (problem.total_tokens() == 0) return;
    tiled_mma::detail::dispatch(problem, [&](auto tag, auto dim) {
        launch_dq<decltype(tag), decltype(dim)::value>(args);
        launch_dkdv<decltype(tag), decltype(dim)::value>(args);
    });
}

}  // namespace moba::wgmma_dense
