// Host side of the wgmma MoBA backward (wgmma.hpp): the launch sequence on args.stream,
//   1. row statistics (kernels/moba/row_stats.hpp) into the workspace's start;
// then for each head pass (kernels/moba/head_passes.hpp: ranges of whole kv groups whose dQ
// accumulator fits the budget; one pass, all heads, without past blocks):
//   2. the inverse block lists of sel (kernels/moba/block_lists.hpp), deterministic (sorted), in
//      items of 128 rows;
//   3. dQ over each row's own block (dq_kernel.cuh, own-block mode): stores the pass's fp32
//      accumulator (or dq itself when the selection has no past blocks);
//   4. one persistent launch of dq_wave_kernel.cuh per past-block slot: adds into the accumulator;
//      then kernels/moba/accumulator.hpp's finalize_dq: dq = scale * accumulator;
//   5. dK/dV per (128-key tile of a MoBA block, kv head of the pass) over the lists' rows and the
//      block's own rows (moba_dkdv_kernel.cuh): written once, in the dtype.
// Every sum runs in a fixed order (no atomics but the waves' one add per element and wave, in
// launch order): deterministic. tiled_mma's backward (mma.sync) is the same sequence on 64-row
// tiles; this one runs the dense wgmma backward's tile steps.
// wgmma_moba_atomic's backward (moba_atomic_backward, head dim 128): per head pass the lists,
// the zeroed accumulator, then 5 only: the dK/dV kernel with the fused dQ (moba_dkdv_kernel.cuh),
// which adds every (row, key tile) pair's dS K in no fixed order, then finalize_dq; steps 3 and 4,
// which recompute S and dP for every pair, are gone. Without past blocks it is moba_backward.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/moba/row_stats.hpp"
#include "kernels/wgmma/dq_wave_kernel.cuh"
#include "kernels/wgmma/launch.hpp"
#include "kernels/wgmma/moba_dkdv_kernel.cuh"
#include "kernels/wgmma/tensor_map.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba::wgmma {
namespace {

constexpr int kItemRows = detail::TileShape<64>::kBlockM;  // rows of a dQ wave item = a CTA's rows
static_assert(kItemRows == detail::TileShape<128>::kBlockM);
constexpr int kKeyTile = detail::DkdvPlan<64>::kKeys;  // keys of a dK/dV CTA
static_assert(kKeyTile == detail::DkdvPlan<128>::kKeys);

int waves_of(const Problem& problem) { return problem.sel_slots() - 1; }

int tiles_per_block(const Problem& problem) { return (problem.block + kKeyTile - 1) / kKeyTile; }

// dK/dV CTAs of a pass of kv_heads kv heads: every (kbar slot, key tile of the block, kv head).
std::int64_t dkdv_ctas(const Problem& problem, int kv_heads) {
    return sparse::kbar_slots(problem.total_tokens(), problem.block, problem.batch()) *
           tiles_per_block(problem) * kv_heads;
}

template <typename T, int kD>
void launch_dq_waves(const AttentionArgs& args, const float2* stats, const detail::OwnBlockDq& pass,
                     const sparse::BlockLists& lists) {
    const Problem& problem = args.problem;
    const std::int64_t total = problem.total_tokens();
    using S = detail::TileShape<kD>;
    const CUtensorMap k_map = detail::make_tile_map(args.k, total, problem.heads_kv, kD, S::kBlockN);
    const CUtensorMap v_map = detail::make_tile_map(args.v, total, problem.heads_kv, kD, S::kBlockN);
    const detail::DqWaveParams params{args.q,
                                      args.dout,
                                      stats,
                                      args.cu_seqlens,
                                      pass.dq_acc,
                                      problem.batch(),
                                      problem.heads_q,
                                      problem.group(),
                                      problem.block,
                                      static_cast<float>(problem.scale() * kLog2e),
                                      pass.head0,
                                      pass.heads};
    detail::launch_per_wave(detail::dq_wave_kernel<T, kD>, detail::kThreads, static_cast<int>(detail::DqWavePlan<kD>::kBytes), k_map, v_map,
                            params, lists, args.stream);
}

// lists == nullptr: no past blocks (own rows only), every kv head. kDq != none: the fused dQ
// adds into dq_acc (the pass's accumulator over query heads [acc_head0, acc_head0 + acc_heads)).
template <typename T, int kD, detail::DqSum kDq = detail::DqSum::none>
void launch_dkdv(const AttentionArgs& args, const float2* stats, const sparse::BlockLists* lists,
                 float* dq_acc = nullptr, int acc_head0 = 0, int acc_heads = 0) {
    const Problem& problem = args.problem;
    const std::int64_t total = problem.total_tokens();
    const CUtensorMap k_map = detail::make_tile_map(args.k, total, problem.heads_kv, kD, kKeyTile);
    const CUtensorMap v_map = detail::make_tile_map(args.v, total, problem.heads_kv, kD, kKeyTile);
    const double scale = problem.scale();
    const int kv_heads = lists != nullptr ? lists->kv_heads : problem.heads_kv;
    const detail::MobaDkdvParams params{args.cu_seqlens,
                                        stats,
                                        args.q,
                                        args.dout,
                                        args.dk,
                                        args.dv,
                                        lists != nullptr ? lists->offsets : nullptr,
                                        lists != nullptr ? lists->rows : nullptr,
                                        lists != nullptr ? lists->lists_per_wave : 0,
                                        dq_acc,
                                        acc_head0,
                                        acc_heads,
                                        lists != nullptr ? lists->waves : 0,
                                        lists != nullptr ? lists->kv0 : 0,
                                        kv_heads,
                                        problem.batch(),
                                        problem.heads_q,
                                        problem.heads_kv,
                                        problem.group(),
                                        problem.block,
                                        tiles_per_block(problem),
                                        static_cast<float>(scale),
                                        static_cast<float>(scale * kLog2e)};
    const auto kernel = detail::moba_dkdv_kernel<T, kD, kDq>;
    constexpr int kSmem = static_cast<int>(detail::MobaDkdvPlan<kD, kDq>::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const dim3 grid(static_cast<unsigned>(dkdv_ctas(problem, kv_heads)));
    kernel<<<grid, detail::kThreads, kSmem, args.stream>>>(k_map, v_map, params);
    MOBA_CHECK_LAUNCH();
}

// kMobaAtomicDqEnv (wgmma.hpp): how the fused dQ is summed. red by default: per-row bulk
// reduce-adds (256 bytes, 128 a tile) ran the fused kernel 47% slower (kernels/NOTES.md).
detail::DqSum moba_atomic_dq_sum() {
    const char* v = std::getenv(kMobaAtomicDqEnv);
    if (v == nullptr || *v == '\0' || std::string_view(v) == "red") return detail::DqSum::red;
    if (std::string_view(v) == "bulk") return detail::DqSum::bulk;
    throw std::invalid_argument(fmt::format("{}={}: expected red or bulk", kMobaAtomicDqEnv, v));
}

// The refusals both backwards make before any launch; false when there is nothing to do.
bool begin_backward(const AttentionArgs& args, const char* name, const Support& support,
                    std::size_t workspace_bytes) {
    const Problem& problem = args.problem;
    if (!support.ok) throw std::invalid_argument(fmt::format("{} backward: {}", name, support.reason));
    if (problem.total_tokens() == 0) return false;
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("{} backward needs a workspace of {} bytes", name, workspace_bytes));
    if (waves_of(problem) > 0 && args.sel == nullptr)
        throw std::invalid_argument(fmt::format("{} backward: the selection sel is null", name));
    return true;
}

// Both entries without past blocks (k = 1, or one block): own blocks only, no lists, dq written
// directly by the own-block dQ kernel.
void own_blocks_backward(const AttentionArgs& args, const float2* stats) {
    const detail::OwnBlockDq own{nullptr, 0, args.problem.heads_q};
    detail::launch_dq(args, stats, &own);
    dispatch_tensor_core(args.problem, [&](auto tag, auto dim) {
        launch_dkdv<decltype(tag), decltype(dim)::value>(args, stats, nullptr);
    });
}

}  // namespace

Support moba_backward_can_implement(const Problem& problem) {
    if (Support s = moba_can_implement(problem); !s.ok) return s;
    if (Support s = sparse::row_stats_can_implement(problem); !s.ok) return s;
    if (dkdv_ctas(problem, problem.heads_kv) > INT_MAX)
        return Support::no(fmt::format("wgmma_moba backward: {} dK/dV tiles (block slots x tiles x kv heads) "
                                       "exceed the grid's x limit",
                                       dkdv_ctas(problem, problem.heads_kv)));
    return Support::yes();
}

std::size_t moba_backward_workspace_bytes(const Problem& problem) {
    if (!moba_backward_can_implement(problem).ok) return 0;
    std::size_t bytes = sparse::row_stats_bytes(problem) + sparse::dq_accumulator_bytes(problem);
    if (waves_of(problem) > 0)
        bytes += sparse::block_lists_workspace_bytes(problem, kItemRows, sparse::kv_heads_per_pass(problem));
    return bytes;
}

void moba_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (!begin_backward(args, "wgmma_moba", moba_backward_can_implement(problem),
                        moba_backward_workspace_bytes(problem)))
        return;
    const sparse::BackwardWorkspace ws = sparse::carve_backward_workspace(problem, args.workspace);
    sparse::row_stats(args, ws.stats);
    if (waves_of(problem) == 0) return own_blocks_backward(args, ws.stats);
    // One head pass after another, each reusing dq_acc and the lists. A pass holds whole kv
    // groups, so its dK/dV are complete when it ends.
    sparse::for_each_head_pass(problem, [&](const sparse::HeadPass& pass) {
        const sparse::BlockLists lists = sparse::build_block_lists(
            problem, args.cu_seqlens, args.sel, kItemRows, ws.lists, /*deterministic=*/true, args.stream, pass);
        const detail::OwnBlockDq own{ws.dq_acc, pass.q0(), pass.q_heads()};
        detail::launch_dq(args, ws.stats, &own);
        dispatch_tensor_core(problem, [&](auto tag, auto dim) {
            using T = decltype(tag);
            constexpr int kD = decltype(dim)::value;
            launch_dq_waves<T, kD>(args, ws.stats, own, lists);
            sparse::finalize_dq(problem, ws.dq_acc, own.head0, own.heads, args.dq, args.stream);
            launch_dkdv<T, kD>(args, ws.stats, &lists);
        });
    });
}

}  // namespace moba::wgmma

namespace moba::wgmma {

Support moba_atomic_backward_can_implement(const Problem& problem) {
    if (Support s = moba_backward_can_implement(problem); !s.ok) return s;
    if (problem.head_dim != 128)
        return Support::no(fmt::format("wgmma_moba_atomic backward: head dim {} (the fused dQ takes 128 only: "
                                       "each consumer warpgroup multiplies dS by half of K's columns)",
                                       problem.head_dim));
    return Support::yes();
}

std::size_t moba_atomic_backward_workspace_bytes(const Problem& problem) {
    moba_atomic_dq_sum();  // a bad setting is refused here, before anything is allocated or run
    if (!moba_atomic_backward_can_implement(problem).ok) return 0;
    return moba_backward_workspace_bytes(problem);  // the same regions: the accumulator is reused
}

void moba_atomic_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    const detail::DqSum sum = moba_atomic_dq_sum();  // refused before any launch
    if (!begin_backward(args, "wgmma_moba_atomic", moba_atomic_backward_can_implement(problem),
                        moba_atomic_backward_workspace_bytes(problem)))
        return;
    const sparse::BackwardWorkspace ws = sparse::carve_backward_workspace(problem, args.workspace);
    sparse::row_stats(args, ws.stats);
    if (waves_of(problem) == 0) return own_blocks_backward(args, ws.stats);
    sparse::for_each_head_pass(problem, [&](const sparse::HeadPass& pass) {
        const sparse::BlockLists lists = sparse::build_block_lists(
            problem, args.cu_seqlens, args.sel, kItemRows, ws.lists, /*deterministic=*/true, args.stream, pass);
        MOBA_CUDA_CALL(cudaMemsetAsync(ws.dq_acc, 0,
                                       static_cast<std::size_t>(problem.total_tokens()) * pass.q_heads() * 128 * sizeof(float),
                                       args.stream));
        dispatch_tensor_core(problem, [&](auto tag, auto dim) {
            using T = decltype(tag);
            if constexpr (decltype(dim)::value == 128) {
                if (sum == detail::DqSum::bulk)
                    launch_dkdv<T, 128, detail::DqSum::bulk>(args, ws.stats, &lists, ws.dq_acc, pass.q0(), pass.q_heads());
                else
                    launch_dkdv<T, 128, detail::DqSum::red>(args, ws.stats, &lists, ws.dq_acc, pass.q0(), pass.q_heads());
            }
        });
        sparse::finalize_dq(problem, ws.dq_acc, pass.q0(), pass.q_heads(), args.dq, args.stream);
    });
}

}  // namespace moba::wgmma
