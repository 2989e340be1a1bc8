// Host side of the wgmma MoBA forward (wgmma_dense.hpp): the launch sequence on args.stream,
//   1. own-block pass: the causal kernel (kernel.cuh) in own-block mode writes the fp32
//      accumulator (O, m, l) of every row over its own block up to itself;
//   2. tiled_mma's inverse block lists of sel, cut into items of 128 rows (one CTA tile);
//   3. one persistent launch of the sparse-wave kernel (wave_kernel.cuh) per past-block slot;
//   4. tiled_mma's finalize kernel: out = O / l, lse = ln 2 * (m + log2 l).
// The accumulator layout and the lists are tiled_mma's, so the two versions share steps 2 and 4.
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/cuda_check.hpp"
#include "kernels/tiled_mma/block_lists.hpp"
#include "kernels/tiled_mma/forward_host.cuh"  // make_forward_params, launch_finalize
#include "kernels/tiled_mma/launch.hpp"           // align_up, dispatch, persistent_ctas
#include "kernels/wgmma_dense/launch.hpp"
#include "kernels/wgmma_dense/tensor_map.hpp"
#include "kernels/wgmma_dense/wave_kernel.cuh"
#include "kernels/wgmma_dense/wgmma_dense.hpp"

namespace moba::wgmma_dense {
namespace {

constexpr int kTileRows = detail::TileShape<64>::kBlockM;  // rows of an item = a CTA's rows
static_assert(kTileRows == detail::TileShape<128>::kBlockM);

using tiled_mma::detail::align_up;

struct Workspace {
    detail::Accumulator acc;
    void* lists;
};

// [O: rows * D floats][(m, l): rows float2][block lists], each 256-byte aligned.
Workspace carve(const Problem& problem, void* base) {
    auto* bytes = static_cast<unsigned char*>(base);
    const auto rows = static_cast<std::size_t>(problem.lse_elems());
    const std::size_t o_bytes = align_up(rows * static_cast<std::size_t>(problem.head_dim) * sizeof(float));
    const std::size_t ml_bytes = align_up(rows * sizeof(float2));
    return {{reinterpret_cast<float*>(bytes), reinterpret_cast<float2*>(bytes + o_bytes)},
            bytes + o_bytes + ml_bytes};
}

template <typename T, int kD>
void launch_waves(const AttentionArgs& args, const detail::Accumulator& acc,
                  const tiled_mma::BlockLists& lists) {
    if (lists.waves == 0) return;
    const Problem& problem = args.problem;
    const std::int64_t total = problem.total_tokens();
    const CUtensorMap k_map = detail::make_tile_map(args.k, total, problem.heads_kv, kD, detail::TileShape<kD>::kBlockN);
    const CUtensorMap v_map = detail::make_tile_map(args.v, total, problem.heads_kv, kD, detail::TileShape<kD>::kBlockN);
    const detail::WaveParams params{args.q,
                                    args.cu_seqlens,
                                    acc.o,
                                    acc.ml,
                                    problem.batch(),
                                    problem.heads_q,
                                    problem.heads_kv,
                                    problem.group(),
                                    problem.block,
                                    static_cast<float>(problem.scale() * 1.4426950408889634)};
    const auto kernel = detail::sparse_wave_kernel<T, kD>;
    constexpr int kSmem = static_cast<int>(detail::WaveSmemPlan<kD>::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const int ctas = tiled_mma::detail::persistent_ctas(reinterpret_cast<const void*>(kernel), detail::kThreads, kSmem);
    for (int wave = 0; wave < lists.waves; ++wave) {
        kernel<<<ctas, detail::kThreads, kSmem, args.stream>>>(k_map, v_map, params,
                                                              tiled_mma::detail::wave_work(lists, wave));
        MOBA_CHECK_LAUNCH();
    }
}

}  // namespace

Support moba_can_implement(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    return tiled_mma::block_lists_can_implement(problem, kTileRows);
}

std::size_t moba_workspace_bytes(const Problem& problem) {
    if (!moba_can_implement(problem).ok) return 0;
    const auto rows = static_cast<std::size_t>(problem.lse_elems());
    return align_up(rows * static_cast<std::size_t>(problem.head_dim) * sizeof(float)) +
           align_up(rows * sizeof(float2)) + tiled_mma::block_lists_workspace_bytes(problem, kTileRows);
}

void moba_forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (const Support s = moba_can_implement(problem); !s.ok)
        throw std::invalid_argument("wgmma_moba: " + s.reason);
    if (problem.total_tokens() == 0) return;
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("wgmma_moba forward needs a workspace of {} bytes",
                                                moba_workspace_bytes(problem)));
    const Workspace ws = carve(problem, args.workspace);
    detail::launch_causal(args, &ws.acc);
    const tiled_mma::BlockLists lists = tiled_mma::build_block_lists(
        problem, args.cu_seqlens, args.sel, kTileRows, ws.lists, /*deterministic=*/false, args.stream);
    tiled_mma::detail::dispatch(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        launch_waves<T, kD>(args, ws.acc, lists);
        tiled_mma::detail::launch_finalize<T, kD>(
            problem, tiled_mma::detail::make_forward_params<T>(args, ws.acc.o, ws.acc.ml), args.stream);
    });
}

}  // namespace moba::wgmma_dense
