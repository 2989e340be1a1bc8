// Internal to reference/: the pieces of float64 gating (SEMANTICS.md §2) that the exhaustive
// and the filtered (fast) paths share, so that both produce bitwise the same results: the block
// means, and the ranking of one (token, head) row from its float64 scores.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/common.hpp"
#include "reference/reference.hpp"

namespace moba::ref::detail {

// Block means of k, every block of every sequence numbered globally: sequence s owns blocks
// [first[s], first[s + 1]).
struct BlockMeans {
    std::vector<std::int64_t> first;  // [B + 1]
    std::vector<double> kbar;         // mean of k: [blocks, Hkv, D], summed in token order
    std::vector<double> kabs;         // mean of |k|: [blocks, Hkv, D]
    int heads_kv = 0, dim = 0;

    std::int64_t blocks() const { return first.back(); }
    // Offset of local block j of sequence s, kv head hk, into kbar / kabs.
    std::int64_t row(int s, std::int64_t j, int hk) const {
        return ((first[s] + j) * heads_kv + hk) * dim;
    }
};
BlockMeans block_means(const Shape& shape, const HostInputs& inputs);
// The same from k [total, Hkv, D] alone.
BlockMeans block_means(const Shape& shape, const std::vector<float>& k);

// Outputs sized for the problem: selection -1, boundary_gap +inf, boundary_magnitude 0.
GatingResult empty_gating_result(const Shape& shape);

// One (token, head) row to rank: query q of token t, head h, in sequence s; own block `own`,
// `taken` = min(topk - 1, own) past blocks to select.
struct GatingRow {
    const float* q;
    std::int64_t t;
    int h, s, own, taken;
};

// Scratch of one thread, reused across rows.
struct RankScratch {
    std::vector<std::int32_t> blocks;
    std::vector<double> score;
    std::vector<int> order;
};

// Writes the row's selection, boundary_gap and boundary_magnitude from candidates
// scratch.blocks (ascending local block indices) with float64 scores scratch.score. The
// candidates must include every past block ranked among the first min(taken + 1, own) by
// (score descending, block index ascending); then the result is the exhaustive one.
void rank_row(const Shape& shape, const BlockMeans& means, const GatingRow& row,
              RankScratch& scratch, GatingResult& result);

// The exhaustive row: every past block scored with dot64, then rank_row.
void exhaustive_row(const Shape& shape, const BlockMeans& means, const GatingRow& row,
                    RankScratch& scratch, GatingResult& result);

}  // namespace moba::ref::detail
