// Host side of the wgmma causal kernel (causal_kernel.cuh): limits, tensor maps, template
// dispatch and the launch, for the dense forward and the MoBA forward's own-block pass.
#include <cstdint>
#include <exception>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include <fmt/format.h>

#include "core/constants.hpp"
#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/support.hpp"
#include "kernels/wgmma/causal_kernel.cuh"
#include "kernels/wgmma/launch.hpp"
#include "kernels/wgmma/tensor_map.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba::wgmma {
namespace detail {
namespace {

template <typename T, int kD, bool kOwnBlock>
void launch(const AttentionArgs& args, const sparse::Accumulator* acc) {
    const Problem& problem = args.problem;
    using S = TileShape<kD>;
    const std::int64_t total = problem.total_tokens();
    const CUtensorMap q_map = make_tile_map(args.q, total, problem.heads_q, kD, S::kBlockM);
    const CUtensorMap k_map = make_tile_map(args.k, total, problem.heads_kv, kD, S::kBlockN);
    const CUtensorMap v_map = make_tile_map(args.v, total, problem.heads_kv, kD, S::kBlockN);
    const KernelParams params{args.cu_seqlens,
                              args.out,
                              args.lse,
                              total,
                              problem.heads_q,
                              problem.group(),
                              static_cast<float>(problem.scale() * kLog2e),
                              problem.block,
                              acc != nullptr ? acc->o : nullptr,
                              acc != nullptr ? acc->ml : nullptr,
                              acc != nullptr ? acc->head0 : 0,
                              acc != nullptr ? acc->heads : problem.heads_q,
                              kv_section_heads(problem)};
    const auto kernel = causal_kernel<T, kD, kOwnBlock>;
    constexpr int kSmem = static_cast<int>(SmemPlan<kD>::kBytes);
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    const int max_tiles = (problem.max_seqlen() + S::kBlockM - 1) / S::kBlockM;
    const dim3 grid(static_cast<unsigned>(params.acc_heads * max_tiles), 1, static_cast<unsigned>(problem.batch()));
    kernel<<<grid, kThreads, kSmem, args.stream>>>(q_map, k_map, v_map, params, max_tiles);
    MOBA_CHECK_LAUNCH();
}

}  // namespace

void launch_causal(const AttentionArgs& args, const sparse::Accumulator* acc) {
    dispatch_tensor_core(args.problem, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int kD = decltype(dim)::value;
        if (acc == nullptr) launch<T, kD, false>(args, nullptr);
        else launch<T, kD, true>(args, acc);
    });
}

}  // namespace detail

Support dense_can_implement(const Problem& problem) {
    if (Support s = valid_bf16_or_fp16_d64_or_d128(problem, "wgmma_dense"); !s.ok) return s;
    // TMA coordinates and the kernel's token arithmetic are 32-bit.
    if (problem.total_tokens() > std::numeric_limits<std::int32_t>::max() - 256)
        return Support::no(fmt::format("wgmma_dense needs fewer than 2^31 - 256 tokens, not {}",
                                       problem.total_tokens()));
    // Grid: (tile, head) pairs on x (at most 2^31 - 1), sequences on z (at most 65535). The causal
    // and dQ kernels launch 128-row tiles per query head, dK/dV 128-key tiles per kv head part;
    // the bound counts 64-row tiles per query head, twice any of them, as a margin.
    const std::int64_t tile_heads = (static_cast<std::int64_t>(problem.max_seqlen()) + 63) / 64 * problem.heads_q;
    if (tile_heads > std::numeric_limits<std::int32_t>::max() || problem.batch() > 65535)
        return Support::no(fmt::format("wgmma_dense launches (tile, head) pairs on grid x (at most 2^31 - 1, here "
                                       "{} at 64 rows) and sequences on grid z (at most 65535, here {})",
                                       tile_heads, problem.batch()));
    return Support::yes();
}

void dense_forward(const AttentionArgs& args) {
    const Problem& problem = args.problem;
    if (const Support s = dense_can_implement(problem); !s.ok)
        throw std::invalid_argument("wgmma_dense: " + s.reason);
    if (problem.total_tokens() == 0) return;
    detail::launch_causal(args, nullptr);
}

}  // namespace moba::wgmma
