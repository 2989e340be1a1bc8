// split_decode: MoBA decode and its dense baseline, FlashDecoding-style (SEMANTICS.md §9).
// A decode step is bandwidth-bound: the point is to read every selected K/V block once per kv
// group, however many of the group's heads and the request's new tokens selected it.
// - prepare: the fp32 mean of every full block, per kv head (what a server keeps from prefill).
// - gating (args.gate): per (token, kv head) the past blocks' scores against the means, each
//   mean read once for the group's heads; per (token, head) an exact radix select of the top
//   k-1, ties to the lower index; the own block always. Writes args.sel.
// - union: per (request, kv head) the ascending union of the blocks its rows select.
// - attention: work items are chunks (<= span keys) of those blocks, or for dense decode units of
//   the whole cache; a persistent grid streams each chunk through shared memory once and computes
//   the partial softmax (m, l, o) of every (token, head) that attends it, in fp32 on CUDA cores.
// - merge: per (token, head), its partials by log-sum-exp in a fixed order into out and lse.
// Every partial has a fixed slot and every sum a fixed order; the only atomics are integer
// (histograms, bitmaps), so results are bitwise repeatable. Grids are 1-D with grid-stride or
// persistent loops (no limit from gridDim.y/z); smem is fixed-size (no limit on blocks or top-k).
// Layout of the workspace: kernels/decode/layout.hpp. fp32 on CUDA cores, not MMA: simplest
// to get exactly right, and enough while a kv group has few rows. Measured on an H200 (dense,
// bf16, D 128, one new token, long caches): 3.9 TB/s of K/V at group 1, 3.3 at group 4, 2.1 at
// group 8, 0.4 at group 32: beyond ~4 rows the FMAs, not HBM, set the time; tensor cores (the
// group's rows as the M of an mma) would be the next step.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_api.hpp"

namespace moba::split_decode {

// bf16/fp16, head dim 64 or 128, a valid problem; anything else refused with a reason naming the value.
Support can_implement(const Problem& cache);

// Bytes of args.workspace; 0 for a refused problem. MoBA's include the kept means, so prepare
// and every step with the same cache must pass the same workspace.
std::size_t workspace_bytes(const Problem& cache, std::int64_t total_q);
std::size_t dense_workspace_bytes(const Problem& cache, std::int64_t total_q);

// The kept means of every full block into args.workspace: once per cache, before decode with
// args.gate (a step without gating does not read them).
void prepare(const DecodeArgs& args);

// One MoBA step: with args.gate, gate from the kept means (writes args.sel) and attend the
// selection; without, attend the given args.sel (not written). Writes out and lse.
void decode(const DecodeArgs& args);

// Dense decode: every new token attends every cached key at or before its position; args.sel
// and args.gate are ignored; no prepare.
void dense_decode(const DecodeArgs& args);

}  // namespace moba::split_decode
