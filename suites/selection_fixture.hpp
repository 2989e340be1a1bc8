// A block selection as gating writes it, for the tests of the inverse block lists (the host
// emulation's CPU test and the GPU build's test share it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "core/problem.hpp"

namespace moba::test {

// A selection as gating writes it: per (token, head) up to k-1 distinct past blocks, ascending,
// then the own block, then -1. `full` picks the most recent past blocks (every list as long as
// it gets); otherwise a random subset. `noise` adds malformed entries that must be skipped:
// future blocks and -1 holes before the own block, and rows of past blocks only (no own block).
inline std::vector<std::int32_t> make_sel(const Problem& p, std::mt19937& rng, bool full, bool noise) {
    const int slots = p.sel_slots();
    std::vector<std::int32_t> sel(static_cast<std::size_t>(p.sel_elems()), -1);
    std::size_t at = 0;
    for (const int len : p.seqlens) {
        for (int i = 0; i < len; ++i) {
            const int own = i / p.block;
            for (int h = 0; h < p.heads_q; ++h, at += static_cast<std::size_t>(slots)) {
                std::vector<int> past(static_cast<std::size_t>(own));
                for (int j = 0; j < own; ++j) past[static_cast<std::size_t>(j)] = j;
                if (!full) std::shuffle(past.begin(), past.end(), rng);
                const int keep = std::min(own, slots - 1);
                std::vector<int> row(past.end() - keep, past.end());
                std::sort(row.begin(), row.end());
                const int kind = noise ? static_cast<int>(rng() % 4) : 0;
                if (kind == 1 && !row.empty()) row[rng() % row.size()] = -1;
                if (kind == 2 && !row.empty())
                    row[rng() % row.size()] = own + 1 + static_cast<int>(rng() % 3);
                if (kind == 3) {  // no own block: slots past-looking values, the last one unread
                    row.clear();
                    for (int t = 0; t < slots; ++t)
                        row.push_back(own > 0 ? static_cast<int>(rng() % static_cast<unsigned>(own))
                                              : -1);
                } else {
                    row.push_back(own);
                }
                for (std::size_t t = 0; t < row.size(); ++t) sel[at + t] = row[t];
            }
        }
    }
    return sel;
}

}  // namespace moba::test
