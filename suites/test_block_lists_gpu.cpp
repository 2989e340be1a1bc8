// The inverse block lists built on the GPU (kernels/moba/block_lists.cu) against the host
// emulation (block_lists_host.cpp, itself checked against a brute force by
// test_moba_gating_plan): the deterministic build equal element for element, the other equal
// once each list is sorted, the items and wave ranges equal in both. The cases reach past one
// CTA's rows, across sequence boundaries inside a CTA, beyond the shared-memory window of lists
// (entries counted straight in global memory), into head passes that start at kv head > 0, and
// through malformed rows that must be skipped.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/cuda_check.hpp"
#include "gpu_test_util.hpp"
#include "harness/device.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/head_passes.hpp"
#include "selection_fixture.hpp"
#include "test_util.hpp"

namespace moba::sparse {
namespace {

struct Lists {
    std::vector<std::int32_t> offsets;
    std::vector<std::int32_t> rows;
    std::vector<std::int32_t> item_list;
    std::vector<std::int32_t> item_start;
    std::vector<std::int32_t> wave_items;
};

std::vector<std::int32_t> download(const std::int32_t* device, std::int64_t n) {
    std::vector<std::int32_t> host(static_cast<std::size_t>(n));
    if (n > 0) {
        MOBA_CUDA_CALL(cudaMemcpy(host.data(), device, host.size() * sizeof(std::int32_t),
                                  cudaMemcpyDeviceToHost));
    }
    return host;
}

Lists build_on_gpu(const Problem& p, const std::vector<std::int32_t>& sel, int tile_rows,
                   bool deterministic, const HeadPass& pass) {
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    DeviceBuffer cu_dev(cu.size() * sizeof(std::int32_t));
    cu_dev.upload(cu.data(), cu.size() * sizeof(std::int32_t));
    DeviceBuffer sel_dev(sel.size() * sizeof(std::int32_t));
    sel_dev.upload(sel.data(), sel.size() * sizeof(std::int32_t));
    DeviceBuffer workspace(block_lists_workspace_bytes(p, tile_rows, pass.kv_heads));
    workspace.poison();  // every value read back must have been written
    const BlockLists got =
        build_block_lists(p, cu_dev.as<std::int32_t>(), sel_dev.as<std::int32_t>(), tile_rows,
                          workspace.get(), deterministic, nullptr, pass);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    Lists out;
    out.offsets = download(got.offsets, got.waves > 0 ? got.lists + 1 : 1);
    out.rows = download(got.rows, out.offsets.back());
    out.wave_items = download(got.wave_items, got.waves + 1);
    out.item_list = download(got.item_list, out.wave_items.back());
    out.item_start = download(got.item_start, out.wave_items.back());
    return out;
}

// The pass's lists taken out of the whole problem's host lists (list = (t * kbar_slots + slot)
// * kv_heads + hk - kv0 within a pass), each sorted, with the items they cut into.
Lists expected_for_pass(const Problem& p, const HostBlockLists& all, int tile_rows,
                        const HeadPass& pass) {
    Lists e;
    e.offsets.push_back(0);
    const std::int64_t kbar = all.lists_per_wave / p.heads_kv;
    for (int t = 0; t < all.waves; ++t) {
        e.wave_items.push_back(static_cast<std::int32_t>(e.item_list.size()));
        for (std::int64_t slot = 0; slot < kbar; ++slot) {
            for (int hk = 0; hk < pass.kv_heads; ++hk) {
                const std::int64_t from = (t * kbar + slot) * p.heads_kv + pass.kv0 + hk;
                const auto begin = all.rows.begin() + all.offsets[static_cast<std::size_t>(from)];
                const auto end = all.rows.begin() + all.offsets[static_cast<std::size_t>(from) + 1];
                const auto list = static_cast<std::int32_t>(e.offsets.size() - 1);
                for (std::int64_t c = 0; c < end - begin; c += tile_rows) {
                    e.item_list.push_back(list);
                    e.item_start.push_back(static_cast<std::int32_t>(c));
                }
                e.rows.insert(e.rows.end(), begin, end);
                e.offsets.push_back(static_cast<std::int32_t>(e.rows.size()));
            }
        }
    }
    e.wave_items.push_back(static_cast<std::int32_t>(e.item_list.size()));
    return e;
}

void sort_each_list(Lists& lists) {
    for (std::size_t l = 0; l + 1 < lists.offsets.size(); ++l) {
        std::sort(lists.rows.begin() + lists.offsets[l], lists.rows.begin() + lists.offsets[l + 1]);
    }
}

struct GpuListCase {
    std::vector<int> seqlens;
    int heads_q;
    int heads_kv;
    int block;
    int topk;
    const char* why;
};

TEST(BlockListsGpu, MatchTheHostEmulation) {
    MOBA_REQUIRE_GPU();
    const std::vector<GpuListCase> cases = {
        {{113}, 4, 4, 16, 3, "one CTA, MHA"},
        {{200, 1, 47}, 6, 2, 16, 4, "GQA, a 1-token sequence inside a CTA"},
        {{257, 64}, 3, 1, 32, 64, "MQA, k above the block count"},
        {{5000, 3, 2999, 700}, 8, 2, 16, 5, "many CTAs, sequences starting mid-CTA"},
        {{6000}, 8, 8, 16, 17, "windows of 96 blocks: most entries counted in global memory"},
        {{4096}, 32, 8, 256, 3, "Figure 2b's layout: 32 query heads in 8 groups"},
    };
    std::mt19937 rng(23);
    int checked_entries = 0;
    for (const GpuListCase& c : cases) {
        const Problem p = test::make_problem(c.seqlens, c.heads_q, c.heads_kv, 64, c.block, c.topk,
                                             DType::bf16);
        for (const bool full : {false, true}) {
            const std::vector<std::int32_t> sel = test::make_sel(p, rng, full, !full);
            for (const int tile_rows : {3, 64}) {
                const HostBlockLists host = build_block_lists_host(p, sel, tile_rows);
                std::vector<HeadPass> passes = {all_heads(p)};
                if (p.heads_kv > 1) passes.push_back({p.heads_kv - 1, 1, p.group()});  // kv0 > 0
                for (const HeadPass& pass : passes) {
                    const Lists want = expected_for_pass(p, host, tile_rows, pass);
                    for (const bool deterministic : {true, false}) {
                        SCOPED_TRACE(std::string(c.why) + ": " + p.flags() + " tile_rows " +
                                     std::to_string(tile_rows) + (full ? " full" : " random+noise") +
                                     " pass kv [" + std::to_string(pass.kv0) + ", " +
                                     std::to_string(pass.kv0 + pass.kv_heads) + ")" +
                                     (deterministic ? " deterministic" : ""));
                        Lists got = build_on_gpu(p, sel, tile_rows, deterministic, pass);
                        if (!deterministic) sort_each_list(got);
                        ASSERT_EQ(got.offsets, want.offsets);
                        EXPECT_EQ(got.rows, want.rows);
                        EXPECT_EQ(got.item_list, want.item_list);
                        EXPECT_EQ(got.item_start, want.item_start);
                        EXPECT_EQ(got.wave_items, want.wave_items);
                        checked_entries += static_cast<int>(want.rows.size());
                    }
                }
            }
        }
    }
    EXPECT_GT(checked_entries, 1000000);  // the cases list real volumes, not empty lists
}

}  // namespace
}  // namespace moba::sparse
