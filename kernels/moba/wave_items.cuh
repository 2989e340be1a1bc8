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

// The loads an item's decode waits on: its list and start (item_list, item_start), then the
// list's bounds in rows (offsets[list], offsets[list + 1]); list -1 past the wave's items.
struct ItemLoads {
    int list;
    int start;
    int list_begin;
    int list_end;
};

__host__ __device__ __forceinline__ void load_item_list(const WaveWork& w, int item, int last,
                                                        ItemLoads& l) {
    l.list = item < last ? w.item_list[item] : -1;
    l.start = item < last ? w.item_start[item] : 0;
}

__host__ __device__ __forceinline__ void load_list_bounds(const WaveWork& w, ItemLoads& l) {
    l.list_begin = l.list >= 0 ? w.offsets[l.list] : 0;
    l.list_end = l.list >= 0 ? w.offsets[l.list + 1] : 0;
}

// The arithmetic of a decode, once its loads have landed.
template <int kRows>
__host__ __device__ __forceinline__ WaveItem decode_loaded(const WaveWork& w, const ItemLoads& l,
                                                           const std::int32_t* cu, int batch,
                                                           int block) {
    const std::int64_t local = l.list - w.wave * w.lists_per_wave;
    const std::int64_t slot = local / w.kv_heads;
    const int b = chunk_sequence(cu, batch, slot, block);
    const int begin = l.list_begin + l.start;
    return {w.kv0 + static_cast<int>(local % w.kv_heads),
            cu[b] + (slot - kbar_base(cu, b, block)) * block, begin,
            l.list_end - begin < kRows ? l.list_end - begin : kRows};
}

template <int kRows>
__host__ __device__ __forceinline__ WaveItem decode_item(const WaveWork& w, int item,
                                                         const std::int32_t* cu, int batch,
                                                         int block) {
    ItemLoads l;
    load_item_list(w, item, item + 1, l);
    load_list_bounds(w, l);
    return decode_loaded<kRows>(w, l, cu, batch, block);
}

// A thread's items first, first + stride, ... (< last) in order, each decoded from loads issued
// one step earlier: next() decodes the item whose list bounds were loaded by the previous call,
// loads the following item's bounds (its list was loaded by the previous call too) and the list
// of the one after. A decode at its use is three dependent loads, mostly from DRAM; at block 128
// an item is one key tile of math, and the sparse wave's gatherers and K/V producer spent it
// waiting on them (the consumers waited on Q in 23% of the samples at FlashMoBA's setting,
// kernels/NOTES.md). next() past the last item returns garbage and loads nothing.
template <int kRows>
class ItemStream {
public:
    __host__ __device__ __forceinline__ ItemStream(const WaveWork& w, int first, int last,
                                                   int stride)
        : ahead_(first + stride), last_(last), stride_(stride) {
        load_item_list(w, first, last_, now_);
        load_list_bounds(w, now_);
        load_item_list(w, ahead_, last_, then_);
    }

    // w: the WaveWork the stream was made with.
    __host__ __device__ __forceinline__ WaveItem next(const WaveWork& w, const std::int32_t* cu,
                                                      int batch, int block) {
        const WaveItem it = decode_loaded<kRows>(w, now_, cu, batch, block);
        now_ = then_;
        load_list_bounds(w, now_);
        ahead_ += stride_;
        load_item_list(w, ahead_, last_, then_);
        return it;
    }

private:
    int ahead_;  // the item whose list then_ holds
    int last_;
    int stride_;
    ItemLoads now_;   // the next item to decode: list and bounds issued
    ItemLoads then_;  // the one after: list issued
};

// A gatherer thread's rows of an item, r = tid + i * kThreads: their list entries (token * group
// + h % group), -1 past the item's rows. Loaded an item ahead of their use like ItemStream's.
template <int kRows, int kThreads>
struct RowEntries {
    static constexpr int kPerThread = (kRows + kThreads - 1) / kThreads;
    int entry[kPerThread];

    __host__ __device__ __forceinline__ void load(const WaveWork& w, const WaveItem& it, int tid) {
        for (int i = 0; i < kPerThread; ++i) {
            const int r = tid + i * kThreads;
            entry[i] = r < kRows && r < it.count ? w.rows[it.begin + r] : -1;
        }
    }
};

// The row, in a [total, Hq, ...] tensor, of a list entry (token * group + h % group) of an item
// of kv head hk: the one decoding of an entry, for the waves' gatherers of every backend.
__host__ __device__ __forceinline__ std::int64_t entry_row(int entry, int hk, int group,
                                                           int heads_q) {
    const std::int64_t token = entry / group;
    const int h = hk * group + entry % group;
    return token * heads_q + h;
}

// row_offset[r] = element offset of row r's [.., D] vector in a [total, Hq, D] tensor, or -1
// for r >= count; thread tid of kThreads writes rows tid, tid + kThreads, ... The caller
// synchronises before and after.
template <int kRows, int kThreads, int kD>
__device__ __forceinline__ void item_row_offsets(std::int64_t* row_offset, const WaveWork& w,
                                                 const WaveItem& it, int group, int heads_q,
                                                 int tid) {
    for (int r = tid; r < kRows; r += kThreads) {
        row_offset[r] =
            r < it.count ? entry_row(w.rows[it.begin + r], it.hk, group, heads_q) * kD : -1;
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
