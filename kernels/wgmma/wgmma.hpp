// wgmma: attention for Hopper (sm_90a) with warpgroup MMA (wgmma), TMA loads and a producer /
// two-consumer warpgroup split, FlashAttention-3 style. The registry's wgmma_dense is dense
// causal attention (forward and backward here); its wgmma_moba is the MoBA forward built from
// the same causal kernel (own-block mode) plus a sparse-wave kernel over the inverse block lists
// of kernels/moba/, paired in the registry with kernels/moba/'s gating; its backward runs the
// dense backward's tile steps over the same lists (moba_backward.cu). bf16 and fp16, head dims 64 and 128, any Hq/Hkv ratio, packed varlen
// batches, any block size. The dense backward: the row statistics of kernels/moba/row_stats.hpp,
// then dQ (dq_kernel.cuh) and dK/dV (dkdv_kernel.cuh) on warpgroup MMA; wgmma_dense_atomic's
// backward is the dK/dV kernel with dQ fused in (5 products, dq summed in no fixed order), and
// wgmma_moba_atomic's the MoBA dK/dV kernel with the same fusion (moba_backward.cu).
#pragma once

#include <cstddef>

#include "kernels/kernel_api.hpp"

namespace moba::wgmma {

// Refuses, with the reason, what the kernel does not implement.
Support dense_can_implement(const Problem& problem);

// Full causal attention (ignores sel): writes out and lse. Launches on args.stream and checks
// the launch (throws moba::CudaError); throws std::invalid_argument for a refused problem.
void dense_forward(const AttentionArgs& args);

// dense_can_implement plus sparse::row_stats_can_implement (the row statistics' limits).
Support dense_backward_can_implement(const Problem& problem);

// The row statistics [total, Hq] float2 (kernels/moba/row_stats.hpp), then, for
// GQA/MQA problems with few key tiles, fp32 dK/dV partial sums of the split head groups
// ([2][parts][total, Hkv, D], backward.cu).
std::size_t dense_backward_workspace_bytes(const Problem& problem);

// Full causal attention backward: reads q, k, v, out, lse, dout; writes dq, dk, dv.
// Deterministic (no floating-point atomics). Launches on args.stream; throws
// std::invalid_argument for a refused problem or a null workspace (naming the size needed),
// moba::CudaError for a failed launch.
void dense_backward(const AttentionArgs& args);

// wgmma_dense_atomic's backward (FlashAttention-3's 5 products, dkdv_kernel.cuh's fused dQ):
// dense_backward_can_implement and head dim 128 (the two consumer warpgroups take half of D
// each in the dQ product).
Support dense_atomic_backward_can_implement(const Problem& problem);

// MOBA_DENSE_ATOMIC_DQ=red|bulk (default bulk): how dense_atomic_backward sums its fused dQ, float2
// atomics from registers or bulk reduces from shared memory (kept to compare the two; reports
// list it in meta.kernel_env).
inline constexpr const char* kAtomicDqEnv = "MOBA_DENSE_ATOMIC_DQ";

// dense_backward_workspace_bytes plus the fp32 dQ sums (either layout). Throws
// std::invalid_argument, naming the value, when kAtomicDqEnv is set to neither red nor bulk.
std::size_t dense_atomic_backward_workspace_bytes(const Problem& problem);

// The same gradients as dense_backward in one pass over the key tiles: dQ added by fp32
// atomics in no fixed order, so dq is not bitwise repeatable (dk, dv are). Same errors.
void dense_atomic_backward(const AttentionArgs& args);

// dense_can_implement plus the block lists' limits (sparse::block_lists_can_implement for
// items of 128 rows). The gating is not part of it: the forward reads sel.
Support moba_can_implement(const Problem& problem);

// fp32 accumulator (O [total, pass heads, D], (m, l) [total, pass heads]) plus the block lists'
// workspace for 128-row items, both for one head pass (kernels/moba/head_passes.hpp: as many kv
// groups as fit the accumulator budget, 4 GiB unless MOBA_ACCUMULATOR_BUDGET_MIB says otherwise);
// 0 for a refused problem. Asks cub for its temporary storage size when the
// selection has past-block slots, so it then needs a CUDA device.
std::size_t moba_workspace_bytes(const Problem& problem);

// MoBA forward with the selection args.sel (as sparse::gating writes it): writes out and lse.
// Launches on args.stream without host synchronisation; throws std::invalid_argument for a
// refused problem or a null workspace, moba::CudaError for a failed launch.
void moba_forward(const AttentionArgs& args);

// moba_can_implement plus the row statistics' limits and the dK/dV grid's (block slots x key
// tiles of 128 x kv heads within grid x).
Support moba_backward_can_implement(const Problem& problem);

// The row statistics, one head pass's fp32 dQ accumulator ([total, pass heads, D]; none without
// past blocks) and its block lists (items of 128 rows); 0 for a refused problem. Needs a CUDA
// device when the selection has past-block slots (cub's storage size), as moba_workspace_bytes.
std::size_t moba_backward_workspace_bytes(const Problem& problem);

// MoBA backward with the selection args.sel (moba_backward.cu): reads q, k, v, out, lse, dout;
// writes dq, dk, dv. Deterministic (bitwise repeatable). Launches on args.stream without host
// synchronisation; throws std::invalid_argument for a refused problem, a null workspace or a
// null sel with past blocks, moba::CudaError for a failed launch.
void moba_backward(const AttentionArgs& args);

// wgmma_moba_atomic's backward (the 5-product one, moba_dkdv_kernel.cuh's fused dQ):
// moba_backward_can_implement and head dim 128 (the consumer warpgroups take half of D each in
// the dQ product).
Support moba_atomic_backward_can_implement(const Problem& problem);

// MOBA_MOBA_ATOMIC_DQ=red|bulk (default red): how moba_atomic_backward sums its fused dQ into
// the accumulator, 16-byte vector reductions or 256-byte bulk reduce-adds per row (slower, kept
// to compare), both from a staging buffer in shared memory (reports list it in meta.kernel_env).
inline constexpr const char* kMobaAtomicDqEnv = "MOBA_MOBA_ATOMIC_DQ";

// moba_backward_workspace_bytes (the same regions) for a problem it implements, else 0. Throws
// std::invalid_argument, naming the value, when kMobaAtomicDqEnv is set to neither red nor bulk.
std::size_t moba_atomic_backward_workspace_bytes(const Problem& problem);

// The same gradients as moba_backward with dQ summed inside the dK/dV kernel (no own-block dQ,
// no dQ waves): dq is summed in no fixed order, so it is not bitwise repeatable (dk, dv are).
// Without past blocks it runs moba_backward's own-block kernels. Same errors as moba_backward,
// plus kMobaAtomicDqEnv's.
void moba_atomic_backward(const AttentionArgs& args);

}  // namespace moba::wgmma
