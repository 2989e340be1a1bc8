// Backward of tiled_mma (MoBA, selection fixed) and tiled_mma_dense (full causal), on mma.sync
// m16n8k16 tensor cores with fp32 accumulation, FlashAttention-2 style recomputation of P from
// the forward's lse. Deterministic: no floating-point atomics; every sum runs in a fixed order.
//
// Launch sequence (all on args.stream; MoBA steps 2-5 once per head pass, kernels/moba/
// head_passes.hpp, so dq_acc and the lists hold one range of kv groups):
//   1. row_stats      stats[token, h] = (lse * log2 e, Delta = dout . out)  [total, Hq] float2
//                     (kernels/moba/row_stats.hpp)
//   2. MoBA only: build_block_lists(deterministic) over sel: lists keyed by (wave t, kv block,
//      kv head) of the (token, head) rows whose t-th past block it is, cut into 64-row items.
//   3. dq_causal      per (64-row query tile, head): keys of each row's own block up to the row
//                     (dense: keys 0..row). Writes dq directly when nothing follows (dense, or
//                     MoBA with k = 1), else the fp32 accumulator dq_acc.
//   4. MoBA: dq_wave  one persistent launch per wave over its items: the item's rows against the
//                     complete past block, dq_acc += (a row is in at most one list per wave).
//      finalize_dq    dq = scale * dq_acc in the dtype.
//   5. dkdv_tile      per (64-key tile of a MoBA block or of the sequence, kv head): K, V loaded
//                     once; walks the own-block rows of every head of the group (causal) then
//                     every wave's list of this block and kv head (unmasked), 64 rows at a time;
//                     dK, dV in registers, written once in the dtype.
// Why this design: dK/dV are gathered per key tile (never scattered), so no atomics and no
// partial buffers; the lists give exactly the (row, block) pairs that were selected, and the rows
// of all heads of a kv group share one K/V tile (GQA). dQ recomputes S and dP in its own pass
// instead of FlashAttention-2's atomic dQ accumulation from the dK/dV loop: 7 matrix products per
// attended (row, key tile) pair instead of 5 (1.4x the minimal tensor-core work) for
// determinism without a split-K buffer. The dK/dV kernel needs no shared-memory P/dS tile: with
// keys as the M dimension of every product, a warp's 16 keys never meet another warp's.
//
// Cost model (pairs = attended (row, key) pairs, summed over heads): dK/dV 4 products of
// 2 * D FLOP per pair (S, dP, dV, dK), dQ 3 (S, dP, dQ); plus padding to 64-row tiles (own rows
// per key tile, list tails, items). Memory: q, dout read about twice per selected block of
// their rows (once by dQ, once by dK/dV); k, v once per dK/dV key tile and once per dQ tile or
// item that uses them; dq_acc read and written once per wave (4 D bytes per row and wave).
// Per-CTA shared memory at D = 128: 96.5 KB (dQ), 98.5 KB (dK/dV): two CTAs per SM.
// Measured: kernels/NOTES.md, "Backward". Known imbalance: a MoBA key tile that nearly every
// later row selects (block 0) walks all of them in one CTA.
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/accumulator.hpp"
#include "kernels/moba/row_stats.hpp"
#include "kernels/tiled_mma/backward.hpp"
#include "kernels/tiled_mma/backward_dkdv.cuh"
#include "kernels/tiled_mma/backward_kernels.cuh"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/head_passes.hpp"
#include "kernels/moba/launch.hpp"
#include "kernels/moba/blocks.cuh"
#include "kernels/tiled_mma/tiled_mma.hpp"

namespace moba::tiled_mma {
namespace {

using namespace detail;

constexpr int kItemRows = 64;  // rows per block-list item: the dQ tile height
static_assert(kItemRows == BwdTile<__half, 64>::kRows);
constexpr int kGridYMax = 65535;

// Past-block slots per selection row: the waves of the block lists.
int waves_of(const Problem& problem) { return problem.sel_slots() - 1; }

template <typename T>
BackwardParams<T> make_params(const AttentionArgs& args, const sparse::BackwardWorkspace& ws) {
    const Problem& problem = args.problem;
    const double scale = problem.scale();
    const BackwardShape shape{problem.batch(),
                              problem.heads_q,
                              problem.heads_kv,
                              problem.group(),
                              problem.block,
                              problem.total_tokens(),
                              static_cast<float>(scale),
                              static_cast<float>(scale * kLog2e)};
    return {shape,
            args.cu_seqlens,
            static_cast<const T*>(args.q),
            static_cast<const T*>(args.k),
            static_cast<const T*>(args.v),
            static_cast<const T*>(args.out),
            static_cast<const T*>(args.dout),
            args.lse,
            static_cast<T*>(args.dq),
            static_cast<T*>(args.dk),
            static_cast<T*>(args.dv),
            ws.stats,
            ws.dq_acc,
            0,
            problem.heads_q};
}

int query_tiles(const Problem& problem) {
    return (problem.max_seqlen() + kItemRows - 1) / kItemRows;
}

template <typename T, int kD, bool kDense, bool kAccum>
void launch_dq_causal(const Problem& problem, const BackwardParams<T>& params,
                      cudaStream_t stream) {
    using C = BwdTile<T, kD>;
    const auto kernel = dq_causal<T, kD, kDense, kAccum>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kDqSmemBytes)));
    const int max_tiles = query_tiles(problem);
    const dim3 grid(static_cast<unsigned>(max_tiles) * static_cast<unsigned>(params.acc_heads),
                    static_cast<unsigned>(problem.batch()));
    kernel<<<grid, C::kThreads, C::kDqSmemBytes, stream>>>(params, max_tiles);
    MOBA_CHECK_LAUNCH();
}

template <typename T, int kD>
void launch_dq_waves(const Problem& problem, const BackwardParams<T>& params,
                     const sparse::BlockLists& lists, cudaStream_t stream) {
    using C = BwdTile<T, kD>;
    const auto kernel = dq_wave<T, kD>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(C::kDqSmemBytes)));
    const int ctas =
        sparse::detail::persistent_ctas(reinterpret_cast<const void*>(kernel), C::kThreads, C::kDqSmemBytes);
    for (int wave = 0; wave < lists.waves; ++wave) {
        kernel<<<ctas, C::kThreads, C::kDqSmemBytes, stream>>>(params, sparse::detail::wave_work(lists, wave));
        MOBA_CHECK_LAUNCH();
    }
    sparse::finalize_dq(problem, params.dq_acc, params.acc_head0, params.acc_heads, params.dq, stream);
}

// Key tiles per MoBA block.
int tiles_per_block(const Problem& problem) {
    return (problem.block + BwdTile<__half, 64>::kKeys - 1) / BwdTile<__half, 64>::kKeys;
}

std::int64_t moba_key_ctas(const Problem& problem) {
    return sparse::kbar_slots(problem.total_tokens(), problem.block, problem.batch()) *
           tiles_per_block(problem);
}

template <typename T, int kD, bool kDense>
void launch_dkdv(const Problem& problem, const BackwardParams<T>& params, const ListView& lists,
                 cudaStream_t stream) {
    using K = KvTile<T, kD>;
    const auto kernel = dkdv_tile<T, kD, kDense>;
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(K::kSmemBytes)));
    dim3 grid;
    if constexpr (kDense) {
        grid = dim3(
            static_cast<unsigned>(query_tiles(problem)) * static_cast<unsigned>(problem.heads_kv),
            static_cast<unsigned>(problem.batch()));
    } else {
        grid = dim3(static_cast<unsigned>(moba_key_ctas(problem)),
                    static_cast<unsigned>(lists.kv_heads));
    }
    kernel<<<grid, BwdTile<T, kD>::kThreads, K::kSmemBytes, stream>>>(params, lists,
                                                                      tiles_per_block(problem));
    MOBA_CHECK_LAUNCH();
}

void require(const Support& support) {
    if (!support.ok) throw std::invalid_argument("tiled_mma backward: " + support.reason);
}

// Limits both backward kinds share (beyond dense_can_implement).
Support common_limits(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    if (Support s = sparse::row_stats_can_implement(problem); !s.ok) return s;
    if (problem.batch() > kGridYMax)
        return Support::no(fmt::format("tiled_mma backward: batch {} exceeds the grid's y limit {}",
                                       problem.batch(), kGridYMax));
    const std::int64_t tiles = query_tiles(problem);
    if (tiles * problem.heads_q > INT_MAX)
        return Support::no(
            fmt::format("tiled_mma backward: {} query tiles x {} heads exceed the "
                        "grid's x limit",
                        tiles, problem.heads_q));
    return Support::yes();
}

}  // namespace

Support dense_backward_can_implement(const Problem& problem) { return common_limits(problem); }

Support backward_can_implement(const Problem& problem) {
    if (Support s = common_limits(problem); !s.ok) return s;
    if (problem.heads_kv > kGridYMax)
        return Support::no(
            fmt::format("tiled_mma backward: kv heads {} exceed the grid's y limit {}",
                        problem.heads_kv, kGridYMax));
    if (moba_key_ctas(problem) > INT_MAX)
        return Support::no(fmt::format("tiled_mma backward: {} key tiles exceed the grid's x limit",
                                       moba_key_ctas(problem)));
    return sparse::block_lists_can_implement(problem, kItemRows);
}

std::size_t dense_backward_workspace_bytes(const Problem& problem) {
    if (!dense_backward_can_implement(problem).ok) return 0;
    return sparse::row_stats_bytes(problem);
}

std::size_t backward_workspace_bytes(const Problem& problem) {
    if (!backward_can_implement(problem).ok) return 0;
    return sparse::row_stats_bytes(problem) + sparse::dq_accumulator_bytes(problem) +
           sparse::block_lists_workspace_bytes(problem, kItemRows, sparse::kv_heads_per_pass(problem));
}

void backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(backward_can_implement(problem));
    if (args.workspace == nullptr)
        throw std::invalid_argument(fmt::format("tiled_mma backward needs a workspace of {} bytes",
                                                backward_workspace_bytes(problem)));
    const int waves = waves_of(problem);
    if (waves > 0 && args.sel == nullptr)
        throw std::invalid_argument("tiled_mma backward: the selection sel is null");
    const sparse::BackwardWorkspace ws = sparse::carve_backward_workspace(problem, args.workspace);
    sparse::row_stats(args, ws.stats);
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const BackwardParams<T> params = make_params<T>(args, ws);
        if (waves == 0) {  // k = 1 (or one block): own blocks only, no lists
            launch_dq_causal<T, kD, false, false>(problem, params, args.stream);
            launch_dkdv<T, kD, false>(problem, params, ListView{nullptr, nullptr, 0, 0, 0, problem.heads_kv},
                                      args.stream);
            return;
        }
        // One head pass after another (kernels/moba/head_passes.hpp), each reusing dq_acc and
        // the lists. A pass holds whole kv groups, so its dK/dV are complete when it ends.
        sparse::for_each_head_pass(problem, [&](const sparse::HeadPass& pass) {
            BackwardParams<T> pass_params = params;
            pass_params.acc_head0 = pass.q0();
            pass_params.acc_heads = pass.q_heads();
            const sparse::BlockLists lists = sparse::build_block_lists(
                problem, args.cu_seqlens, args.sel, kItemRows, ws.lists, /*deterministic=*/true, args.stream, pass);
            launch_dq_causal<T, kD, false, true>(problem, pass_params, args.stream);
            launch_dq_waves<T, kD>(problem, pass_params, lists, args.stream);
            launch_dkdv<T, kD, false>(problem, pass_params,
                                      ListView{lists.offsets, lists.rows, lists.lists_per_wave, lists.waves,
                                               lists.kv0, lists.kv_heads},
                                      args.stream);
        });
    });
}

void dense_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    require(dense_backward_can_implement(problem));
    if (args.workspace == nullptr)
        throw std::invalid_argument(
            fmt::format("tiled_mma dense backward needs a workspace of {} bytes",
                        dense_backward_workspace_bytes(problem)));
    const sparse::BackwardWorkspace ws{static_cast<float2*>(args.workspace), nullptr, nullptr};
    sparse::row_stats(args, ws.stats);
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        const BackwardParams<T> params = make_params<T>(args, ws);
        launch_dq_causal<T, kD, true, false>(args.problem, params, args.stream);
        launch_dkdv<T, kD, true>(args.problem, params, ListView{nullptr, nullptr, 0, 0, 0, problem.heads_kv},
                                 args.stream);
    });
}

}  // namespace moba::tiled_mma
