// One wave's work items (block_lists.hpp) as the forward and the backward's dQ pass read them:
// item i is up to kRows (token, head) rows of one (kv block, kv head) list. Shared so that both
// passes decode an item, and address its rows, in exactly one way.
#pragma once

#include <cstdint>

#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/blocks.cuh"

namespace moba::sparse::detail {

// The device view of wave `wave`: items [wave_items[wave], wave_items[wave + 1]).
struct WaveWork {
    const std::int32_t* offsets;     // list l: rows[offsets[l] .. offsets[l+1])
    const std::int32_t* rows;        // token * group + h % group
    const std::int32_t* item_list;   // list of item i
    const std::int32_t* item_start;  // first entry (within the list) of item i
    const std::int32_t* wave_items;  // [waves + 1]
    std::int64_t lists_per_wave;     // kbar_slots * kv_heads
    int kv0;                         // the head pass's first kv head
    int kv_heads;                    // the head pass's kv heads
    int wave;
};

inline WaveWork wave_work(const BlockLists& lists, int wave) {
    return {lists.offsets,    lists.rows,           lists.item_list, lists.item_start,
            lists.wave_items, lists.lists_per_wave, lists.kv0,       lists.kv_heads,
            wave};
}

// What an item names: the kv head, the first key of its (complete, past) MoBA block in packed
// tokens, and its rows rows[begin .. begin + count).
struct WaveItem {
    int hk;
    std::int64_t key_start;
    int begin;
    int count;
};

template <int kRows>
__device__ __forceinline__ WaveItem decode_item(const WaveWork& w, int item, const std::int32_t* cu,
                                                int batch, int block) {
    const int list = w.item_list[item];
    const std::int64_t local = list - w.wave * w.lists_per_wave;
    const std::int64_t slot = local / w.kv_heads;
    const int b = chunk_sequence(cu, batch, slot, block);
    const int begin = w.offsets[list] + w.item_start[item];
    return {w.kv0 + static_cast<int>(local % w.kv_heads),
            cu[b] + (slot - kbar_base(cu, b, block)) * block, begin,
            min(kRows, w.offsets[list + 1] - begin)};
}

// row_offset[r] = element offset of row r's [.., D] vector in a [total, Hq, D] tensor, or -1
// for r >= count. The caller synchronises before and after.
template <int kRows, int kThreads, int kD>
__device__ __forceinline__ void item_row_offsets(std::int64_t* row_offset, const WaveWork& w,
                                                 const WaveItem& it, int group, int heads_q) {
    for (int r = threadIdx.x; r < kRows; r += kThreads) {
        if (r < it.count) {
            const int entry = w.rows[it.begin + r];
            const std::int64_t token = entry / group;
            const int h = it.hk * group + entry % group;
            row_offset[r] = (token * heads_q + h) * kD;
        } else {
            row_offset[r] = -1;
        }
    }
}

// The element offset, in a head pass's accumulator [total, pass_heads, D] over query heads
// [head0, head0 + pass_heads), of the row at element offset `off` (>= 0) of a [total, Hq, D]
// tensor. The same offset when the pass holds every head.
template <int kD>
__device__ __forceinline__ std::int64_t pass_offset(std::int64_t off, int heads_q, int head0,
                                                    int pass_heads) {
    if (pass_heads == heads_q) return off;
    const std::int64_t row = off / kD;
    const std::int64_t token = row / heads_q;
    const int h = static_cast<int>(row - token * heads_q);
    return (token * pass_heads + h - head0) * kD;
}

}  // namespace moba::sparse::detail
