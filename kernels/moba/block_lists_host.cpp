// Host emulation of build_block_lists (block_lists.hpp), sequential: the lists filled by count,
// scan and scatter as on the GPU, each sorted, then cut into items in list order, so a test can
// compare the GPU's lists and items with it element for element. Plain C++; the index helpers come
// from blocks.cuh, as the GPU's do, so a wrong helper is caught by the brute-force expectation of
// the tests, not here.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/blocks.cuh"

namespace moba::sparse {

HostBlockLists build_block_lists_host(const Problem& problem, const std::vector<std::int32_t>& sel,
                                      int tile_rows) {
    const Support support = block_lists_can_implement(problem, tile_rows);
    if (!support.ok) throw std::invalid_argument("tiled_mma " + support.reason);
    if (static_cast<std::int64_t>(sel.size()) != problem.sel_elems()) {
        throw std::invalid_argument("block lists host emulation: sel holds " +
                                    std::to_string(sel.size()) + " entries, the problem " +
                                    std::to_string(problem.sel_elems()));
    }
    const std::vector<std::int32_t> cu = problem.cu_seqlens();
    const int batch = problem.batch();
    const int slots = problem.sel_slots();
    const int group = problem.group();
    const std::int64_t slots_per_wave = kbar_slots(problem.total_tokens(), problem.block, batch);

    HostBlockLists out;
    out.waves = slots - 1;
    out.lists_per_wave = slots_per_wave * problem.heads_kv;
    out.lists = block_list_count(problem);
    const auto lists = static_cast<std::size_t>(out.lists);

    // Calls visit(list, row) for every listed entry: positions t < slots - 1 holding a past block.
    const auto for_each_entry = [&](auto&& visit) {
        for (std::int64_t token = 0; token < problem.total_tokens(); ++token) {
            const int b = find_sequence(cu.data(), batch, token);
            const int own = own_block(cu.data(), b, token, problem.block);
            const std::int64_t slot0 = kbar_base(cu.data(), b, problem.block);
            for (int h = 0; h < problem.heads_q; ++h) {
                const auto row = static_cast<std::int32_t>(token * group + h % group);
                const std::int64_t pair = token * problem.heads_q + h;
                for (int t = 0; t < slots - 1; ++t) {
                    const int j = sel[static_cast<std::size_t>(pair * slots + t)];
                    if (j < 0 || j >= own) continue;
                    visit(static_cast<std::size_t>(
                              (t * slots_per_wave + slot0 + j) * problem.heads_kv + h / group),
                          row);
                }
            }
        }
    };

    std::vector<std::int32_t> counts(lists + 1, 0);
    for_each_entry([&](std::size_t list, std::int32_t) { ++counts[list]; });
    out.offsets.assign(lists + 1, 0);
    for (std::size_t l = 0; l < lists; ++l) out.offsets[l + 1] = out.offsets[l] + counts[l];
    out.rows.assign(static_cast<std::size_t>(out.offsets[lists]), 0);
    for_each_entry([&](std::size_t list, std::int32_t row) {
        out.rows[static_cast<std::size_t>(out.offsets[list] + --counts[list])] = row;
    });
    for (std::size_t l = 0; l < lists; ++l) {
        std::sort(out.rows.begin() + out.offsets[l], out.rows.begin() + out.offsets[l + 1]);
    }

    out.wave_items.assign(static_cast<std::size_t>(out.waves) + 1, 0);
    for (std::size_t l = 0; l < lists; ++l) {
        if (l % static_cast<std::size_t>(out.lists_per_wave) == 0) {
            out.wave_items[l / static_cast<std::size_t>(out.lists_per_wave)] =
                static_cast<std::int32_t>(out.item_list.size());
        }
        const std::int64_t n = out.offsets[l + 1] - out.offsets[l];
        for (std::int64_t start = 0; start < n; start += tile_rows) {
            out.item_list.push_back(static_cast<std::int32_t>(l));
            out.item_start.push_back(static_cast<std::int32_t>(start));
        }
    }
    out.wave_items.back() = static_cast<std::int32_t>(out.item_list.size());
    return out;
}

}  // namespace moba::sparse
