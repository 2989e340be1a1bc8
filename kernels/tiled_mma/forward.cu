// Host side of the tiled_mma forward: limits, workspace layout, template dispatch and the
// launch sequence (own-block pass, block lists, waves, finalize). Kernels: forward_kernels.cuh.
#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "harness/cuda_check.hpp"
#include "kernels/support.hpp"
#include "kernels/tiled_mma/block_lists.hpp"
#include "kernels/tiled_mma/launch.hpp"
#include "kernels/tiled_mma/forward_host.cuh"
#include "kernels/tiled_mma/gating.hpp"
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

struct Workspace {
    float* acc_o;
    float2* acc_ml;
    void* lists;
};

Workspace carve(const Problem& problem, void* base) {
    auto* bytes = static_cast<unsigned char*>(base);
    const std::size_t rows = static_cast<std::size_t>(problem.lse_elems());
    const std::size_t o_bytes = align_up(rows * problem.head_dim * sizeof(float));
    const std::size_t ml_bytes = align_up(rows * sizeof(float2));
    return {reinterpret_cast<float*>(bytes), reinterpret_cast<float2*>(bytes + o_bytes),
            bytes + o_bytes + ml_bytes};
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
void launch_waves(const ForwardParams<T>& params, const BlockLists& lists, cudaStream_t stream) {
    using C = TileOf<T, kD>;
    const auto kernel = sparse_wave<T, kD, kWarps, kM>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kSmemBytes)));
    const int ctas = persistent_ctas(reinterpret_cast<const void*>(kernel), C::kThreads, C::kSmemBytes);
    for (int wave = 0; wave < lists.waves; ++wave) {
        kernel<<<ctas, C::kThreads, C::kSmemBytes, stream>>>(params, wave_work(lists, wave));
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
    if (Support s = gating_can_implement(problem); !s.ok) return s;
    return block_lists_can_implement(problem, TileOf<__half, 64>::kRows);
}

std::size_t attention_workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    const std::size_t rows = static_cast<std::size_t>(problem.lse_elems());
    return align_up(rows * problem.head_dim * sizeof(float)) + align_up(rows * sizeof(float2)) +
           block_lists_workspace_bytes(problem, TileOf<__half, 64>::kRows);
}

void forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(can_implement(problem));
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("tiled_mma forward needs a workspace of {} bytes",
                                                attention_workspace_bytes(problem)));
    const Workspace ws = carve(problem, args.workspace);
    dispatch(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const ForwardParams<T> params = make_forward_params<T>(args, ws.acc_o, ws.acc_ml);
        launch_causal<T, kD, false>(problem, params, args.stream);
        const BlockLists lists = build_block_lists(problem, args.cu_seqlens, args.sel,
                                                   TileOf<T, kD>::kRows, ws.lists,
                                                   /*deterministic=*/false, args.stream);
        launch_waves<T, kD>(params, lists, args.stream);
        launch_finalize<T, kD>(problem, params, args.stream);
    });
}

void dense_forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(dense_can_implement(problem));
    dispatch(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const ForwardParams<T> params = make_forward_params<T>(args, nullptr, nullptr);
        launch_causal<T, kD, true>(problem, params, args.stream);
    });
}

}  // namespace moba::tiled_mma
