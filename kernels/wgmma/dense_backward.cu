// Host side of the wgmma_dense backward (wgmma.hpp): the row statistics (kernels/moba/
// row_stats.hpp, into the workspace's start), then the dQ kernel (dq_kernel.cuh) and the
// dK/dV kernel (dkdv_kernel.cuh) on warpgroup MMA, both reading those statistics. All on
// args.stream. wgmma_dense_atomic's backward (dense_atomic_backward) is the dK/dV kernel with the
// fused dQ (dkdv_kernel.cuh) and finish_bulk_dq (or finish_atomic_dq) instead of the dQ kernel.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "core/constants.hpp"
#include "core/dispatch.hpp"
#include "kernels/moba/row_stats.hpp"
#include "kernels/wgmma/dkdv_kernel.cuh"
#include "kernels/wgmma/dq_kernel.cuh"
#include "kernels/wgmma/launch.hpp"
#include "kernels/wgmma/tensor_map.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba::wgmma {
namespace {

// The dK/dV kernel splits a kv group's heads over this many CTAs per key tile so that the
// grid holds at least kMinDkdvCtas CTAs (about four per SM of an H100 or H200) where the group
// allows: MHA and long inputs keep one part. From the problem alone, so the workspace and the
// order of the parts' sum are fixed for a problem.
constexpr std::int64_t kMinDkdvCtas = 512;

int head_parts(const Problem& problem) {
    std::int64_t key_tiles = 0;
    for (int len : problem.seqlens) key_tiles += (len + detail::DkdvPlan<64>::kKeys - 1) / detail::DkdvPlan<64>::kKeys;
    const std::int64_t ctas = std::max<std::int64_t>(key_tiles * problem.heads_kv, 1);
    return static_cast<int>(std::clamp<std::int64_t>((kMinDkdvCtas + ctas - 1) / ctas, 1, problem.group()));
}

// fp32 dK and dV of every head part: [2][parts][total, Hkv, D]; none with one part.
std::size_t partial_bytes(const Problem& problem) {
    const int parts = head_parts(problem);
    if (parts == 1) return 0;
    return 2 * static_cast<std::size_t>(parts) * static_cast<std::size_t>(problem.kv_elems()) * sizeof(float);
}

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

template <typename T, int kD, bool kOwnBlock, bool kAccum>
void launch_dq_kernel(const AttentionArgs& args, const float2* stats, const detail::OwnBlockDq* own) {
    using S = detail::TileShape<kD>;
    const Problem& problem = args.problem;
    const BackwardMaps maps = backward_maps(args, S::kBlockM, S::kBlockN);
    const double scale = problem.scale();
    const detail::DqParams params{args.cu_seqlens,
                                  stats,
                                  args.dq,
                                  problem.heads_q,
                                  problem.group(),
                                  static_cast<float>(scale),
                                  static_cast<float>(scale * kLog2e),
                                  problem.block,
                                  own != nullptr ? own->dq_acc : nullptr,
                                  own != nullptr ? own->head0 : 0,
                                  own != nullptr ? own->heads : problem.heads_q,
                                  detail::kv_section_heads(problem)};
    const auto kernel = detail::dq_kernel<T, kD, kOwnBlock, kAccum>;
    constexpr int kSmem = static_cast<int>(detail::DqPlan<kD>::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const int max_tiles = (problem.max_seqlen() + S::kBlockM - 1) / S::kBlockM;
    const dim3 grid(static_cast<unsigned>(params.acc_heads * max_tiles), 1, static_cast<unsigned>(problem.batch()));
    kernel<<<grid, detail::kThreads, kSmem, args.stream>>>(maps.q, maps.dout, maps.k, maps.v, params, max_tiles);
    MOBA_CHECK_LAUNCH();
}

// The fused dQ's fp32 sums follow the row statistics and the partial sums, 256-byte aligned.
std::size_t dq_acc_offset(const Problem& problem) {
    return (sparse::row_stats_bytes(problem) + partial_bytes(problem) + 255) / 256 * 256;
}

// The fused dQ's fp32 sums: [total, Hq, D] for DqSum::red, 64-row tiles for DqSum::bulk
// (dkdv_kernel.cuh's DkdvParams::dq_acc); room for either.
std::size_t dq_acc_bytes(const Problem& problem) {
    const std::int64_t tiles = problem.total_tokens() / 64 + problem.batch() + 1;
    const std::int64_t elems = std::max(problem.q_elems(), tiles * 64 * problem.heads_q * problem.head_dim);
    return static_cast<std::size_t>(elems) * sizeof(float);
}

// kAtomicDqEnv (wgmma.hpp): how the fused dQ is summed.
detail::DqSum atomic_dq_sum() {
    const char* v = std::getenv(kAtomicDqEnv);
    if (v == nullptr || *v == '\0' || std::string_view(v) == "bulk") return detail::DqSum::bulk;
    if (std::string_view(v) == "red") return detail::DqSum::red;
    throw std::invalid_argument(fmt::format("{}={}: expected red or bulk", kAtomicDqEnv, v));
}

template <typename T, int kD, detail::DqSum kDq>
void launch_dkdv(const AttentionArgs& args) {
    using Plan = detail::DkdvPlan<kD, kDq>;
    constexpr bool kFusedDq = Plan::kFusedDq;
    const Problem& problem = args.problem;
    const BackwardMaps maps = backward_maps(args, Plan::kRows, Plan::kKeys);
    const double scale = problem.scale();
    const int parts = head_parts(problem);
    // The partial sums follow the row statistics in the workspace.
    float* partial = parts > 1 ? reinterpret_cast<float*>(static_cast<unsigned char*>(args.workspace) +
                                                          sparse::row_stats_bytes(problem))
                               : nullptr;
    const int key_tiles = (problem.max_seqlen() + Plan::kKeys - 1) / Plan::kKeys;
    // A head slot's stream: the Q and dO rows of its part's heads (at most ceil(group / parts)).
    const int slot_heads = (problem.group() + parts - 1) / parts;
    const detail::DkdvParams params{args.cu_seqlens,
                                    static_cast<const float2*>(args.workspace),
                                    args.dk,
                                    args.dv,
                                    partial,
                                    parts,
                                    problem.total_tokens(),
                                    problem.heads_q,
                                    problem.heads_kv,
                                    problem.group(),
                                    static_cast<float>(scale),
                                    static_cast<float>(scale * kLog2e),
                                    key_tiles,
                                    l2_section_heads(detail::stream_bytes(problem, slot_heads), 1,
                                                     problem.heads_kv * parts),
                                    kFusedDq ? reinterpret_cast<float*>(static_cast<unsigned char*>(args.workspace) +
                                                                        dq_acc_offset(problem))
                                             : nullptr};
    const auto kernel = detail::dkdv_kernel<T, kD, kDq>;
    constexpr int kSmem = static_cast<int>(Plan::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const dim3 grid(static_cast<unsigned>(problem.heads_kv * parts * key_tiles), 1,
                    static_cast<unsigned>(problem.batch()));
    kernel<<<grid, detail::kThreads, kSmem, args.stream>>>(maps.q, maps.dout, maps.k, maps.v, params);
    MOBA_CHECK_LAUNCH();
    if (parts == 1) return;
    const std::int64_t elems = problem.kv_elems();
    const int threads = 256;
    const auto blocks = static_cast<unsigned>((elems / 2 + threads - 1) / threads);
    detail::sum_head_parts<T><<<blocks, threads, 0, args.stream>>>(params, elems);
    MOBA_CHECK_LAUNCH();
}

}  // namespace

Support dense_backward_can_implement(const Problem& problem) {
    if (Support s = dense_can_implement(problem); !s.ok) return s;
    return sparse::row_stats_can_implement(problem);
}

std::size_t dense_backward_workspace_bytes(const Problem& problem) {
    if (!dense_backward_can_implement(problem).ok) return 0;
    return sparse::row_stats_bytes(problem) + partial_bytes(problem);
}

namespace {

// Both dense backwards' start: refuses a problem the entry does not implement or a missing
// workspace (naming its size), then writes the row statistics at the workspace's start. False
// when there is nothing to compute.
bool begin_backward(const AttentionArgs& args, const char* entry, const Support& support,
                    std::size_t (*workspace_bytes)(const Problem&)) {
    if (!support.ok) throw std::invalid_argument(fmt::format("{} backward: {}", entry, support.reason));
    if (args.workspace == nullptr)
        throw std::invalid_argument(
            fmt::format("{} backward needs a workspace of {} bytes", entry, workspace_bytes(args.problem)));
    if (args.problem.total_tokens() == 0) return false;
    sparse::row_stats(args, static_cast<float2*>(args.workspace));
    return true;
}

}  // namespace

void dense_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (!begin_backward(args, "wgmma_dense", dense_backward_can_implement(problem), dense_backward_workspace_bytes))
        return;
    detail::launch_dq(args, static_cast<const float2*>(args.workspace), nullptr);
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        launch_dkdv<decltype(tag), decltype(dim)::value, detail::DqSum::none>(args);
    });
}

Support dense_atomic_backward_can_implement(const Problem& problem) {
    if (Support s = dense_backward_can_implement(problem); !s.ok) return s;
    if (problem.head_dim != 128)
        return Support::no(fmt::format("the fused dQ splits head dim 128 over two warpgroups; head dim {} "
                                       "(wgmma_dense's backward takes 64)",
                                       problem.head_dim));
    return Support::yes();
}

std::size_t dense_atomic_backward_workspace_bytes(const Problem& problem) {
    atomic_dq_sum();  // a bad MOBA_DENSE_ATOMIC_DQ is refused here, before anything is allocated or run
    if (!dense_atomic_backward_can_implement(problem).ok) return 0;
    return dq_acc_offset(problem) + dq_acc_bytes(problem);
}

void dense_atomic_backward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    const detail::DqSum sum = atomic_dq_sum();  // a bad setting is refused before any launch
    if (!begin_backward(args, "wgmma_dense_atomic", dense_atomic_backward_can_implement(problem),
                        dense_atomic_backward_workspace_bytes))
        return;
    auto* dq_acc = reinterpret_cast<float*>(static_cast<unsigned char*>(args.workspace) + dq_acc_offset(problem));
    const std::int64_t elems = problem.q_elems();
    MOBA_CUDA_CALL(cudaMemsetAsync(dq_acc, 0, dq_acc_bytes(problem), args.stream));
    const auto scale = static_cast<float>(problem.scale());
    dispatch_tensor_core(problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        if constexpr (kD == 128) {
            if (sum == detail::DqSum::red) {
                launch_dkdv<T, kD, detail::DqSum::red>(args);
                const int threads = 256;
                const auto blocks = static_cast<unsigned>((elems / 2 + threads - 1) / threads);
                detail::finish_atomic_dq<T><<<blocks, threads, 0, args.stream>>>(dq_acc, args.dq, scale, elems);
            } else {
                launch_dkdv<T, kD, detail::DqSum::bulk>(args);
                const dim3 grid(static_cast<unsigned>((problem.max_seqlen() + 63) / 64),
                                static_cast<unsigned>(problem.heads_q), static_cast<unsigned>(problem.batch()));
                detail::finish_bulk_dq<T><<<grid, 256, 0, args.stream>>>(dq_acc, args.dq, args.cu_seqlens,
                                                                        problem.heads_q, scale);
            }
            MOBA_CHECK_LAUNCH();
        }
    });
}

namespace detail {

void launch_dq(const AttentionArgs& args, const float2* stats, const OwnBlockDq* own) {
    dispatch_tensor_core(args.problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        if (own == nullptr) {
            launch_dq_kernel<T, kD, false, false>(args, stats, nullptr);
        } else if (own->dq_acc != nullptr) {
            launch_dq_kernel<T, kD, true, true>(args, stats, own);
        } else {
            launch_dq_kernel<T, kD, true, false>(args, stats, own);
        }
    });
}

}  // namespace detail
}  // namespace moba::wgmma
