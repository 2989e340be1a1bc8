// Host side of the tiled_mma forward: limits, workspace layout, template dispatch and the
// launch sequence (own-block pass, block lists, waves, finalize). Kernels: forward_kernels.cuh;
// the block lists, the accumulator and its finalize are kernels/moba/'s.
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/gating.hpp"
#include "kernels/moba/launch.hpp"
#include "kernels/support.hpp"
#include "kernels/tiled_mma/forward_kernels.cuh"
#include "kernels/tiled_mma/tiled_mma.hpp"

namespace moba::tiled_mma {
namespace {

using namespace detail;

// 4 warps of 32 query rows (two m16 tiles each): 128 rows per CTA. Each K/V fragment read
// from shared memory feeds two MMAs (v1 had one m-tile per warp and ran at ~200 TFLOP/s).
constexpr int kWarps = 4;
constexpr int kM = 2;

template <typename T, int kD>
using TileOf = Tile<T, kD, kWarps, kM>;

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
                             static_cast<float>(problem.scale() * kLog2e)};
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

// The causal pass over every (query tile, head, sequence); kDense selects keys from 0.
template <typename T, int kD, bool kDense>
void launch_causal(const Problem& problem, const ForwardParams<T>& params, cudaStream_t stream) {
    using C = TileOf<T, kD>;
    const auto kernel = causal_tile<T, kD, kWarps, kM, kDense>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kSmemBytes)));
    const int max_tiles = (problem.max_seqlen() + C::kRows - 1) / C::kRows;
    const dim3 grid(max_tiles, problem.heads_q, problem.batch());
    kernel<<<grid, C::kThreads, C::kSmemBytes, stream>>>(params, max_tiles);
    MOBA_CHECK_LAUNCH();
}

template <typename T, int kD>
void launch_waves(const ForwardParams<T>& params, const sparse::BlockLists& lists, cudaStream_t stream) {
    using C = TileOf<T, kD>;
    const auto kernel = sparse_wave<T, kD, kWarps, kM>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kSmemBytes)));
    const int ctas = sparse::detail::persistent_ctas(reinterpret_cast<const void*>(kernel), C::kThreads, C::kSmemBytes);
    for (int wave = 0; wave < lists.waves; ++wave) {
        kernel<<<ctas, C::kThreads, C::kSmemBytes, stream>>>(params, sparse::detail::wave_work(lists, wave));
        MOBA_CHECK_LAUNCH();
    }
}

void require(const Support& support) {
    if (!support.ok) throw std::invalid_argument("tiled_mma: " + support.reason);
}

}  // namespace

Support dense_can_implement(const Problem& problem) {
    return valid_bf16_or_fp16_d64_or_d128(problem, "tiled_mma");
}

Support can_implement(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    if (Support s = sparse::gating_can_implement(problem); !s.ok) return s;
    return sparse::block_lists_can_implement(problem, TileOf<__half, 64>::kRows);
}

std::size_t attention_workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    return sparse::accumulator_bytes(problem, problem.heads_q) +
           sparse::block_lists_workspace_bytes(problem, TileOf<__half, 64>::kRows);
}

void forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(can_implement(problem));
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("tiled_mma forward needs a workspace of {} bytes",
                                                attention_workspace_bytes(problem)));
    // One pass over every head (the accumulator's rows are the q rows: forward_kernels.cuh
    // indexes both alike); wgmma_moba's forward is the one that runs head passes.
    const sparse::ForwardWorkspace ws = sparse::carve_forward_workspace(problem, problem.heads_q, args.workspace);
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const ForwardParams<T> params = make_forward_params<T>(args, ws.acc.o, ws.acc.ml);
        launch_causal<T, kD, false>(problem, params, args.stream);
        const sparse::BlockLists lists = sparse::build_block_lists(problem, args.cu_seqlens, args.sel,
                                                   TileOf<T, kD>::kRows, ws.lists,
                                                   /*deterministic=*/false, args.stream,
                                                   sparse::all_heads(problem));
        launch_waves<T, kD>(params, lists, args.stream);
    });
    sparse::finalize(problem, ws.acc, args.out, args.lse, args.stream);
}

void dense_forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(dense_can_implement(problem));
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const ForwardParams<T> params = make_forward_params<T>(args, nullptr, nullptr);
        launch_causal<T, kD, true>(problem, params, args.stream);
    });
}

}  // namespace moba::tiled_mma
