// Host side of the wgmma MoBA forward (wgmma.hpp): the launch sequence on args.stream, for each
// head pass (kernels/moba/head_passes.hpp: ranges of kv heads whose accumulator fits the budget),
//   1. own-block pass: the causal kernel (causal_kernel.cuh) in own-block mode writes the fp32
//      accumulator (O, m, l) of every row over its own block up to itself;
//   2. the inverse block lists of sel (kernels/moba/block_lists.hpp), items of 128 rows (one CTA);
//   3. one persistent launch of the sparse-wave kernel (wave_kernel.cuh) per past-block slot;
//   4. the accumulator's finalize (kernels/moba/accumulator.hpp): out = O / l, lse.
// The accumulator, its workspace carve and the lists are kernels/moba/'s, shared with tiled_mma.
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "core/constants.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/wgmma/launch.hpp"
#include "kernels/wgmma/tensor_map.hpp"
#include "kernels/wgmma/wave_kernel.cuh"
#include "kernels/wgmma/wgmma.hpp"

namespace moba::wgmma {
namespace {

constexpr int kTileRows = detail::TileShape<64>::kBlockM;  // rows of an item = a CTA's rows
static_assert(kTileRows == detail::TileShape<128>::kBlockM);

template <typename T, int kD>
void launch_waves(const AttentionArgs& args, const sparse::Accumulator& acc,
                  const sparse::BlockLists& lists) {
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
                                    problem.group(),
                                    problem.block,
                                    static_cast<float>(problem.scale() * kLog2e),
                                    acc.head0,
                                    acc.heads};
    detail::launch_per_wave(detail::sparse_wave_kernel<T, kD>, detail::kThreads, static_cast<int>(detail::WaveSmemPlan<kD>::kBytes), k_map, v_map,
                            params, lists, args.stream);
}

}  // namespace

Support moba_can_implement(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    return sparse::block_lists_can_implement(problem, kTileRows);
}

std::size_t moba_workspace_bytes(const Problem& problem) {
    if (!moba_can_implement(problem).ok) return 0;
    const int kv_heads = sparse::kv_heads_per_pass(problem);
    return sparse::accumulator_bytes(problem, kv_heads * problem.group()) +
           sparse::block_lists_workspace_bytes(problem, kTileRows, kv_heads);
}

void moba_forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (const Support s = moba_can_implement(problem); !s.ok)
        throw std::invalid_argument("wgmma_moba: " + s.reason);
    if (problem.total_tokens() == 0) return;
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("wgmma_moba forward needs a workspace of {} bytes",
                                                moba_workspace_bytes(problem)));
    const sparse::ForwardWorkspace ws = sparse::carve_forward_workspace(
        problem, sparse::kv_heads_per_pass(problem) * problem.group(), args.workspace);
    // One head pass after another on the stream, each reusing the accumulator and lists.
    sparse::for_each_head_pass(problem, [&](const sparse::HeadPass& pass) {
        sparse::Accumulator acc = ws.acc;
        acc.head0 = pass.q0();
        acc.heads = pass.q_heads();
        detail::launch_causal(args, &acc);
        const sparse::BlockLists lists = sparse::build_block_lists(
            problem, args.cu_seqlens, args.sel, kTileRows, ws.lists, /*deterministic=*/false, args.stream, pass);
        dispatch_tensor_core(problem, [&](auto tag, auto dim) {
            launch_waves<decltype(tag), decltype(dim)::value>(args, acc, lists);
        });
        sparse::finalize(problem, acc, args.out, args.lse, args.stream);
    });
}

}  // namespace moba::wgmma
