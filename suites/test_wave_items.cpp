// The sparse waves' item decode (kernels/moba/wave_items.cuh) on the CPU, over the host
// emulation's lists (block_lists_host.cpp) of random selections:
// - every item, decoded alone (decode_item), names a kv block that each of its rows selected at
//   that wave, inside the row's own sequence, and its rows are its list's [start, start + count);
// - the stream the wgmma waves decode by (ItemStream: each item's loads issued one item earlier)
//   gives every CTA's items, for any first item and stride, exactly as decode_item does;
// - RowEntries holds a gatherer thread's rows' list entries, -1 past the item's rows.
// A stream that paired one item's list with another's bounds, or skipped or repeated an item,
// would gather the wrong rows for the right block: the GPU suites would see wrong outputs only
// where such items differ, and this names the item.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/wave_items.cuh"
#include "selection_fixture.hpp"

namespace moba::sparse::detail {
namespace {

Problem make(std::vector<int> seqlens, int heads_q, int heads_kv, int block, int topk) {
    Problem p;
    p.seqlens = std::move(seqlens);
    p.heads_q = heads_q;
    p.heads_kv = heads_kv;
    p.head_dim = 64;
    p.block = block;
    p.topk = topk;
    p.dtype = DType::bf16;
    return p;
}

WaveWork work_of(const HostBlockLists& lists, const Problem& p, int wave) {
    return {lists.offsets.data(),
            lists.rows.data(),
            lists.item_list.data(),
            lists.item_start.data(),
            lists.wave_items.data(),
            lists.lists_per_wave,
            0,
            p.heads_kv,
            wave};
}

void expect_same(const WaveItem& got, const WaveItem& want) {
    EXPECT_EQ(got.hk, want.hk);
    EXPECT_EQ(got.key_start, want.key_start);
    EXPECT_EQ(got.begin, want.begin);
    EXPECT_EQ(got.count, want.count);
}

// The item's definition, checked row by row against the selection.
template <int kRows>
void expect_item_means_its_rows(const Problem& p, const HostBlockLists& lists,
                                const std::vector<std::int32_t>& sel, int wave, int item,
                                const WaveItem& it) {
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    const int group = p.heads_q / p.heads_kv;
    const std::int32_t list = lists.item_list[static_cast<std::size_t>(item)];
    const std::int32_t begin = lists.offsets[static_cast<std::size_t>(list)] +
                               lists.item_start[static_cast<std::size_t>(item)];
    const std::int32_t end = lists.offsets[static_cast<std::size_t>(list) + 1];
    ASSERT_EQ(it.begin, begin);
    ASSERT_EQ(it.count, std::min(kRows, end - begin));
    ASSERT_GE(it.count, 1);
    ASSERT_GE(it.hk, 0);
    ASSERT_LT(it.hk, p.heads_kv);
    for (int r = 0; r < it.count; ++r) {
        const std::int32_t entry = lists.rows[static_cast<std::size_t>(it.begin + r)];
        const std::int64_t token = entry / group;
        const int h = it.hk * group + entry % group;
        int b = 0;
        while (cu[static_cast<std::size_t>(b) + 1] <= token) ++b;
        ASSERT_GE(it.key_start, cu[static_cast<std::size_t>(b)])
            << "row " << r << ": block outside its sequence";
        ASSERT_LE(it.key_start + p.block, token) << "row " << r << ": not a complete past block";
        const std::int64_t within = it.key_start - cu[static_cast<std::size_t>(b)];
        ASSERT_EQ(within % p.block, 0);
        const std::size_t at =
            static_cast<std::size_t>((token * p.heads_q + h) * p.sel_slots() + wave);
        ASSERT_EQ(sel[at], within / p.block)
            << "row " << r << " (token " << token << ", head " << h << ")";
    }
}

template <int kRows, int kThreads>
void check_lists(const Problem& p, const std::vector<std::int32_t>& sel) {
    const HostBlockLists lists = build_block_lists_host(p, sel, kRows);
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    std::int64_t items_seen = 0;
    for (int wave = 0; wave < lists.waves; ++wave) {
        SCOPED_TRACE("wave " + std::to_string(wave));
        const WaveWork w = work_of(lists, p, wave);
        const int first_item = lists.wave_items[static_cast<std::size_t>(wave)];
        const int last = lists.wave_items[static_cast<std::size_t>(wave) + 1];
        std::vector<WaveItem> alone;
        for (int item = first_item; item < last; ++item) {
            alone.push_back(decode_item<kRows>(w, item, cu.data(), p.batch(), p.block));
            expect_item_means_its_rows<kRows>(p, lists, sel, wave, item, alone.back());
        }
        items_seen += last - first_item;
        const int items = last - first_item;
        for (const int stride : {1, 2, 3, 7, items + 1}) {
            for (int offset = 0; offset < std::min(stride, items + 1); ++offset) {
                SCOPED_TRACE("stride " + std::to_string(stride) + ", first " +
                             std::to_string(offset));
                const int first = first_item + offset;
                ItemStream<kRows> stream(w, first, last, stride);
                for (int item = first; item < last; item += stride) {
                    SCOPED_TRACE("item " + std::to_string(item));
                    const WaveItem got = stream.next(w, cu.data(), p.batch(), p.block);
                    const WaveItem& want = alone[static_cast<std::size_t>(item - first_item)];
                    expect_same(got, want);
                    for (int tid = 0; tid < kThreads; ++tid) {
                        RowEntries<kRows, kThreads> rows;
                        rows.load(w, got, tid);
                        for (int i = 0; i < RowEntries<kRows, kThreads>::kPerThread; ++i) {
                            const int r = tid + i * kThreads;
                            const std::int32_t expected =
                                r < kRows && r < want.count
                                    ? lists.rows[static_cast<std::size_t>(want.begin + r)]
                                    : -1;
                            ASSERT_EQ(rows.entry[i], expected) << "thread " << tid << ", row " << r;
                        }
                    }
                }
            }
        }
    }
    EXPECT_GT(items_seen, 0);  // never vacuous: every case below has waves with rows
}

struct Case {
    std::vector<int> seqlens;
    int heads_q;
    int heads_kv;
    int block;
    int topk;
};

TEST(WaveItems, DecodeAndStreamNameTheSelectedBlocks) {
    const std::vector<Case> cases = {
        {{113}, 4, 4, 16, 3},          // MHA
        {{200, 1, 47}, 6, 2, 16, 4},   // GQA, varlen with a 1-token sequence
        {{257, 64}, 3, 1, 32, 5},      // MQA
        {{160, 161, 90}, 4, 2, 8, 6},  // many short blocks: many lists per wave
    };
    std::mt19937 rng(11);
    for (const Case& c : cases) {
        const Problem p = make(c.seqlens, c.heads_q, c.heads_kv, c.block, c.topk);
        for (const bool full : {false, true}) {
            SCOPED_TRACE(p.flags() + (full ? " full" : " random"));
            const std::vector<std::int32_t> sel = test::make_sel(p, rng, full, /*noise=*/false);
            // The wgmma waves' shape (128 rows, 96 gatherers) and small items (many per list,
            // threads with no row).
            check_lists<128, 96>(p, sel);
            check_lists<4, 3>(p, sel);
            check_lists<5, 8>(p, sel);
        }
    }
}

}  // namespace
}  // namespace moba::sparse::detail
