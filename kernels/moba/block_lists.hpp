// Inverse block lists, which both MoBA backends' sparse waves run over: for every (wave, kv block, kv head) the (query
// token, query head) rows that selected the block as a PAST block at position `wave` of their
// selection row (the own block is the causal-diagonal pass's, never listed), cut into work items
// of at most tile_rows rows. A block-sparse forward runs the waves one after another, each over
// its items with a persistent grid: a row sits in at most one list of a wave, so merging a
// wave's partial results into the row's fp32 accumulator needs no atomics and is deterministic.
// Built from a selection sel [total, Hq, slots] on the GPU: count and rank each entry (atomics,
// warp- and CTA-aggregated), exclusive scan (cub::DeviceScan), scatter by rank; deterministic
// lists instead take one stable radix sort (cub::DeviceRadixSort) per wave of (list, row) pairs
// in row order. Then chunk counts, a second scan and the item expansion.
// Cost: sel read three times (4 * total * Hq * slots bytes each) and a rank per entry written
// and read, or, deterministic, sel read once per wave and the sort's passes over 8 bytes per
// selection row and wave; the rows written once; 4 int32 passes over the lists; 8 bytes written
// per item. No tokens x blocks buffer, no host synchronisation.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernel_api.hpp"
#include "kernels/moba/head_passes.hpp"

namespace moba::sparse {

// Lists of one head pass (head_passes.hpp: kv heads [kv0, kv0 + kv_heads); all_heads gives the
// whole problem's): CSR indexed by list = (t * kbar_slots + slot) * kv_heads + (hk - kv0), where t is
// the position of the entry in its selection row (0 <= t < waves = sel_slots - 1), slot =
// kbar_base(b) + j (blocks.cuh) for block j of sequence b, and hk the kv head. The lists of wave t are the
// contiguous range [t * lists_per_wave, (t+1) * lists_per_wave). Gap slots between sequences
// have empty lists, and so do blocks j < t when sel is ascending (position t holds a block >= t).
// A row has one entry per position, so it sits in at most one list of each wave.
//
// Items: item i covers rows[offsets[item_list[i]] + item_start[i] ..
//   min(offsets[item_list[i]] + item_start[i] + tile_rows, offsets[item_list[i] + 1])),
// never empty. List l of n entries has ceil(n / tile_rows) items with item_start = 0,
// tile_rows, 2 * tile_rows, ...; items are ordered by (list, item_start), so the items of wave t
// are the contiguous range [wave_items[t], wave_items[t+1]). wave_items[waves] is the item
// count, at most max_items.
struct BlockLists {
    std::int32_t* offsets;        // [lists + 1] device: list l is rows[offsets[l] .. offsets[l+1])
    std::int32_t* rows;           // [entries] device: token * group + (h % group), token packed
    std::int64_t lists;           // waves * lists_per_wave
    std::int64_t lists_per_wave;  // kbar_slots * kv_heads
    int waves;                    // sel_slots - 1; 0: no lists, no items
    int kv0;                      // the pass's first kv head
    int kv_heads;                 // the pass's kv heads
    std::int32_t* item_list;      // [max_items] device: the item's list
    std::int32_t* item_start;     // [max_items] device: its first entry, relative to offsets[list]
    std::int32_t* wave_items;     // [waves + 1] device: wave t's items are [wave_items[t], [t+1])
    std::int64_t max_items;       // host bound of wave_items[waves]: max_block_items
};

// Refuses invalid problems, tile_rows < 1, and problems whose entries, lists + 1 or items
// overflow int32 (row values, token * group + h % group < total * Hq, then fit too).
Support block_lists_can_implement(const Problem& problem, int tile_rows);

// Upper bound of the entries: total * Hq * (sel_slots - 1) (every row lists at most
// sel_slots - 1 past blocks). Saturates at INT64_MAX.
std::int64_t max_list_entries(const Problem& problem);

// Number of lists over all waves: (sel_slots - 1) * kbar_slots * Hkv. Saturates at INT64_MAX.
std::int64_t block_list_count(const Problem& problem);

// Upper bound of the items: max_list_entries / tile_rows + block_list_count (tile_rows >= 1).
// Proof: list l of n_l entries makes ceil(n_l / R) <= floor(n_l / R) + 1 items (R = tile_rows),
// and sum_l floor(n_l / R) <= floor(sum_l n_l / R) <= floor(max_list_entries / R), so the items
// number at most floor(max_list_entries / R) + lists. Saturates at INT64_MAX; throws
// std::invalid_argument for tile_rows < 1.
std::int64_t max_block_items(const Problem& problem, int tile_rows);

// Everything build_block_lists needs, cub's temporary storage included, for the worst case
// (max_list_entries, max_block_items, deterministic) of a pass of kv_heads kv heads (all of the
// problem's without the argument; 1 <= kv_heads <= heads_kv, else std::invalid_argument). Asks
// cub for its temporary storage size
// when there is at least one wave, so it then needs a CUDA device; throws moba::CudaError
// otherwise. 0 for a refused problem. Decreasing in tile_rows: a workspace sized for tile_rows R
// also serves builds with tile_rows >= R.
std::size_t block_lists_workspace_bytes(const Problem& problem, int tile_rows);
std::size_t block_lists_workspace_bytes(const Problem& problem, int tile_rows, int kv_heads);

// Builds the lists and items of `sel` (as gating writes it: ascending, -1 padding; entries that
// are -1, the own block or a future block are skipped, and the last slot of a row is never read)
// for the rows of the pass's query heads on `stream`, carving everything out of `workspace`
// (block_lists_workspace_bytes bytes for at least pass.kv_heads). The
// returned pointers point into the workspace and are valid once the stream reaches them; nothing
// is copied to the host and the stream is not synchronised. With no wave (sel_slots == 1) it
// only zeroes offsets[0] and wave_items[0] (no kernel launch). deterministic: each list sorted
// ascending by row value, so the result is bitwise repeatable; otherwise the order within a
// list depends on atomic timing (the items and offsets never do). Throws std::invalid_argument
// for a refused problem or a null workspace.
BlockLists build_block_lists(const Problem& problem, const std::int32_t* cu_seqlens,
                             const std::int32_t* sel, int tile_rows, void* workspace,
                             bool deterministic, cudaStream_t stream, const HeadPass& pass);

// ---- host emulation (block_lists_host.cpp) --------------------------------------------------
// The same lists and items built on the CPU, for checking the GPU's result: equal to the
// deterministic GPU result element for element (rows[0 .. entries), item_list / item_start
// [0 .. items)); the non-deterministic one equals it after sorting each list.
struct HostBlockLists {
    std::vector<std::int32_t> offsets;  // [lists + 1]
    std::vector<std::int32_t> rows;     // [entries]
    std::int64_t lists = 0;
    std::int64_t lists_per_wave = 0;
    int waves = 0;
    std::vector<std::int32_t> item_list;   // [items]
    std::vector<std::int32_t> item_start;  // [items]
    std::vector<std::int32_t> wave_items;  // [waves + 1]
};

// sel is a host copy [total, Hq, sel_slots]. Throws std::invalid_argument for a refused problem
// or a sel of the wrong size.
HostBlockLists build_block_lists_host(const Problem& problem, const std::vector<std::int32_t>& sel,
                                      int tile_rows);

}  // namespace moba::sparse
