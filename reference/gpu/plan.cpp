#include "reference/gpu/plan.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace moba::ref::gpu {

void check_selection(const Problem& problem, const Selection& sel) {
    problem.validate();
    const int slots = problem.sel_slots();
    const int heads = problem.heads_q;
    if (sel.slots != slots)
        throw std::invalid_argument("selection has " + std::to_string(sel.slots) +
                                    " slots; the problem needs " + std::to_string(slots));
    if (static_cast<std::int64_t>(sel.blocks.size()) != problem.sel_elems())
        throw std::invalid_argument("selection has " + std::to_string(sel.blocks.size()) +
                                    " entries; the problem needs " +
                                    std::to_string(problem.sel_elems()));
    const std::vector<std::int32_t> cu = problem.cu_seqlens();
    for (int s = 0; s < problem.batch(); ++s) {
        for (std::int64_t t = cu[s]; t < cu[s + 1]; ++t) {
            const auto own = static_cast<std::int32_t>((t - cu[s]) / problem.block);
            for (int h = 0; h < heads; ++h) {
                const std::int32_t* row = sel.blocks.data() + (t * heads + h) * slots;
                auto bad = [&](int slot, const char* why) {
                    throw std::invalid_argument(
                        "selection of token " + std::to_string(t) + ", head " + std::to_string(h) +
                        ", slot " + std::to_string(slot) + " = " + std::to_string(row[slot]) +
                        ": " + why + " (own block " + std::to_string(own) + ")");
                };
                int used = 0;
                while (used < slots && row[used] != -1) {
                    if (row[used] < 0) bad(used, "not a block index");
                    if (row[used] > own) bad(used, "a block after the own block");
                    if (used > 0 && row[used] <= row[used - 1]) bad(used, "not strictly ascending");
                    ++used;
                }
                for (int slot = used; slot < slots; ++slot)
                    if (row[slot] != -1) bad(slot, "a block after -1 padding");
                if (used == 0 || row[used - 1] != own)
                    bad(std::max(used - 1, 0), "the own block is missing");
            }
        }
    }
}

namespace {

// The ascending blocks that rows [r0, r1) of (sequence starting at token `start`, head h) attend.
std::vector<std::int32_t> union_of(const Problem& p, const Selection* sel, std::int64_t start,
                                   int h, std::int64_t r0, std::int64_t r1) {
    std::vector<std::int32_t> blocks;
    if (!sel) {
        const auto last = static_cast<std::int32_t>((r1 - 1) / p.block);
        for (std::int32_t b = 0; b <= last; ++b) blocks.push_back(b);
        return blocks;
    }
    const int slots = sel->slots;
    for (std::int64_t r = r0; r < r1; ++r) {
        const std::int32_t* row = sel->blocks.data() + ((start + r) * p.heads_q + h) * slots;
        for (int slot = 0; slot < slots && row[slot] >= 0; ++slot) blocks.push_back(row[slot]);
    }
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    return blocks;
}

std::int64_t keys_of(const std::vector<std::int32_t>& blocks, int block, std::int64_t len) {
    std::int64_t keys = 0;
    for (std::int32_t b : blocks)
        keys += std::min<std::int64_t>(block, len - std::int64_t{b} * block);
    return keys;
}

}  // namespace

Plan plan_tiles(const Problem& p, const Selection* sel, std::int64_t workspace_elems) {
    p.validate();
    // Columns are indexed in 32 bits on the GPU and passed to cuBLAS as int.
    if (workspace_elems < 1 || workspace_elems > std::numeric_limits<std::int32_t>::max())
        throw std::invalid_argument("workspace of " + std::to_string(workspace_elems) +
                                    " scores: must be in [1, 2^31)");
    Plan plan;
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    const std::int64_t tile_rows = std::int64_t{p.block} * ((kMinTileRows + p.block - 1) / p.block);
    auto add = [&](int s, int h, std::int64_t r0, std::int64_t r1, std::vector<std::int32_t> blocks,
                   std::int64_t keys) {
        Tile t{s,
               h,
               r0,
               static_cast<int>(r1 - r0),
               static_cast<std::int64_t>(plan.blocks.size()),
               static_cast<int>(blocks.size()),
               keys};
        plan.blocks.insert(plan.blocks.end(), blocks.begin(), blocks.end());
        plan.max_keys = std::max(plan.max_keys, keys);
        plan.max_elems = std::max(plan.max_elems, keys * t.rows);
        plan.max_rows = std::max(plan.max_rows, t.rows);
        plan.tiles.push_back(t);
    };
    for (int s = 0; s < p.batch(); ++s) {
        const std::int64_t start = cu[s];
        const std::int64_t len = cu[s + 1] - start;
        for (int h = 0; h < p.heads_q; ++h) {
            for (std::int64_t r0 = 0; r0 < len; r0 += tile_rows) {
                const std::int64_t r1 = std::min(r0 + tile_rows, len);
                std::vector<std::int32_t> blocks = union_of(p, sel, start, h, r0, r1);
                const std::int64_t keys = keys_of(blocks, p.block, len);
                if ((r1 - r0) * keys <= workspace_elems) {
                    add(s, h, r0, r1, std::move(blocks), keys);
                    continue;
                }
                // Runs of rows whose scores fit; each run's union is within the tile's.
                const std::int64_t run = workspace_elems / keys;
                if (run < 1)
                    throw std::invalid_argument(
                        "the float64 GPU truth's workspace (" + std::to_string(workspace_elems) +
                        " scores) cannot hold one query row of sequence " + std::to_string(s) +
                        " attending " + std::to_string(keys) + " keys");
                for (std::int64_t a = r0; a < r1; a += run) {
                    const std::int64_t b = std::min(a + run, r1);
                    std::vector<std::int32_t> sub = union_of(p, sel, start, h, a, b);
                    const std::int64_t sub_keys = keys_of(sub, p.block, len);
                    add(s, h, a, b, std::move(sub), sub_keys);
                }
            }
        }
    }
    return plan;
}

namespace {

double device_bytes_of(const Problem& p, double max_elems, double max_keys, double max_rows, double blocks,
                       bool with_selection, bool backward) {
    const double q = static_cast<double>(p.q_elems()), kv = static_cast<double>(p.kv_elems());
    const double passes = backward ? 2.0 : 1.0;  // forward alone, or forward and backward
    return 8.0 * (2 * passes * q + 2 * passes * kv + static_cast<double>(p.lse_elems()) +
                  passes * max_elems + 2 * passes * max_keys * p.head_dim +
                  (backward ? max_rows : 0.0)) +
           4.0 * (std::max(q, kv) + (with_selection ? static_cast<double>(p.sel_elems()) : 0.0) + blocks);
}

}  // namespace

double device_bytes(const Problem& problem, const Plan& plan, bool with_selection, bool backward) {
    return device_bytes_of(problem, static_cast<double>(plan.max_elems), static_cast<double>(plan.max_keys),
                           plan.max_rows, static_cast<double>(plan.blocks.size()), with_selection, backward);
}

double device_bytes_estimate(const Problem& problem, bool with_selection, bool backward,
                             std::int64_t workspace_elems) {
    const double keys = std::min<double>(problem.max_seqlen(), static_cast<double>(workspace_elems));
    return device_bytes_of(problem, static_cast<double>(workspace_elems), keys, problem.max_seqlen(), 0.0,
                           with_selection, backward);
}

}  // namespace moba::ref::gpu
