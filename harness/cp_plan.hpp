// Context-parallel MoBA over ranks (issue 20), the part that needs no GPU: how one long sequence
// is sharded, what each rank computes and receives, and what it must hold. The sharded kernels
// themselves need a several-GPU machine and NCCL; this plan is what they would run by and what
// their reports would be judged against (per-rank work, bytes exchanged).
//
// Sharding (zig-zag, as ring attention implementations balance causal work): the sequence is cut
// into 2R chunks of whole MoBA blocks; rank r holds chunks r and 2R-1-r (queries, keys and
// values). A query's own block is then always local; the block means are all-gathered (small);
// each rank receives the K/V of the remote blocks its queries selected, one copy per (block, kv
// head) however many of the group's query heads chose it; partial results are merged by
// log-sum-exp (SEMANTICS.md §3's online softmax, split by key ranges).
// Pure and deterministic; tested on the CPU (suites/test_cp_plan.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "kernels/kernel_api.hpp"  // Support

namespace moba {

// One sequence, ranks >= 1, and a length that splits into 2 * ranks chunks of whole blocks;
// otherwise the reason names the value that does not fit.
Support cp_can_shard(const Problem& problem, int ranks);

struct CpRank {
    int rank = 0;
    std::int64_t chunk_begin[2] = {0, 0};  // token ranges [begin, end) of its two chunks
    std::int64_t chunk_end[2] = {0, 0};
    std::int64_t tokens = 0;
    double dense_pairs = 0;  // full causal (query, key) pairs of its queries, summed over query heads
    double moba_pairs = 0;   // with the selection (0 without one)
    // Remote (block, kv head) pairs its queries selected, and their K and V bytes in the dtype.
    std::int64_t blocks_received = 0;
    std::int64_t kv_bytes_received = 0;
    // The other ranks' block means (fp32, [blocks, Hkv, D]) received by the all-gather.
    std::int64_t means_bytes_received = 0;
    // Device memory a training step holds on this rank, by the single-GPU kernels' buffers for its
    // tokens: q, k, v, dout, out, dq, dk, dv in the dtype, lse and row statistics, the MoBA
    // forward's fp32 accumulator (reused for dq) and block lists of one head pass
    // (kernels/moba/head_passes.hpp), the selection, plus the received K/V and means. An estimate
    // from sizes, not a measurement; the gating's block means are not counted.
    std::size_t moba_memory_bytes = 0;
};

struct CpPlan {
    int ranks = 0;
    std::int64_t chunk = 0;  // tokens per chunk
    std::vector<CpRank> per_rank;
    double dense_imbalance = 0;  // max over mean of dense_pairs
    double moba_imbalance = 0;   // the same for moba_pairs (0 without a selection)
};

// The plan for `ranks` ranks; `sel` [total, Hq, slots] (SEMANTICS.md §2) adds the MoBA pairs and
// the K/V each rank receives, or is null (full causal work and the means only). Throws
// std::invalid_argument with cp_can_shard's reason, or when the selection does not fit.
CpPlan zigzag_plan(const Problem& problem, int ranks, const Selection* sel);

}  // namespace moba
