// The workspace of split_decode, carved from the caller's one buffer: every region's offset and
// size, and the chunking they depend on, from the cache's shape and total_q alone (the caller
// sizes the buffer before any step runs, and the per-request q_len live on the device only).
// Regions start 256-byte aligned. Pure host code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/problem.hpp"

namespace moba::split_decode::detail {

struct Region {
    std::size_t offset = 0;
    std::size_t bytes = 0;
    template <typename V>
    V* in(void* base) const {
        return bytes == 0 ? nullptr
                          : reinterpret_cast<V*>(static_cast<char*>(base) + offset);
    }
};

// MoBA decode. The kept block means come first, so prepare() and every step agree on them
// whatever total_q a step has.
struct MobaLayout {
    int span = 0;              // keys per attention chunk; a block is cut into chunks_per_block
    int chunks_per_block = 0;  // ceil(block / span)
    std::int64_t partials = 0; // total_q * Hq * slots * chunks_per_block
    std::int64_t max_items = 0;  // bound on attention work items (grid sizing only)
    // Gating scores are buffered for score_rows new tokens at a time (0: no token has more past
    // blocks than top-k - 1 can take, so nothing is scored), score_stride blocks per (row, head).
    std::int64_t score_rows = 0;
    int score_stride = 0;
    Region means;        // [total_k / Bs, Hkv, D] f32: full block b of request r at cu_k[r]/Bs + b
    Region union_list;   // [(total_k / Bs + B) * Hkv] i32: union blocks of (r, g), ascending
    Region union_count;  // [B * Hkv] i32
    Region item_prefix;  // [B * Hkv + 1] i64: first work item of each (r, g)
    Region scores;       // [score_rows, Hq, score_stride] f32
    Region partial_ml;   // [partials] float2 (m, l)
    Region partial_o;    // [partials, D] f32, unnormalised
    std::size_t total_bytes = 0;
};

// Dense decode: the cache cut into units of `span` keys, every unit attended by every head.
struct DenseLayout {
    int span = 0;
    std::int64_t partials = 0;   // bound: Hq * (sum_r units_r + (total_q - B) * max units)
    std::int64_t max_items = 0;  // exactly Hkv * sum_r units_r
    Region item_prefix;   // [B * Hkv + 1] i64
    Region partial_base;  // [B + 1] i64: first partial of each request
    Region partial_ml;
    Region partial_o;
    std::size_t total_bytes = 0;
};

// For a problem can_implement accepts and total_q >= its batch.
MobaLayout moba_layout(const Problem& cache, std::int64_t total_q);
DenseLayout dense_layout(const Problem& cache, std::int64_t total_q);

}  // namespace moba::split_decode::detail
