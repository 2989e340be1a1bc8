// How the dense cuBLAS path cuts its work: the score matrices' row stride, how many query
// heads one chunk holds, which heads one batched GEMM covers, and where things live in the
// workspace. Shared by forward.cu and backward.cu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/problem.hpp"

namespace moba::dense_cublas::detail {

// One head's L x L fp32 scores plus its probabilities may take at most this much.
constexpr std::size_t kHeadScoreCap = std::size_t{16} << 30;
// Head chunks are sized so that scores and probabilities stay within this (at least 1 head).
constexpr std::size_t kScoreTarget = std::size_t{8} << 30;

// Throws std::invalid_argument with can_implement's reason when the problem is refused.
void check_problem(const Problem& problem);

// Row stride (elements) of a sequence's score and probability matrices: L rounded up to 8,
// so every row starts 16-byte aligned for the tensor-core GEMMs.
int score_ld(int len);
// Elements of one head's matrix: L * score_ld(L).
std::int64_t score_elems(int len);
// Bytes of one head's fp32 scores plus its dtype probabilities.
std::size_t head_score_bytes(int len, DType dtype);

// The workspace: [0, scores) holds `heads` fp32 score matrices followed by as many dtype
// probability matrices, for the chunk size of the sequence at hand; [accum, end) holds the
// backward's fp32 dk and dv accumulators [max L, Hkv, D] each.
struct Layout {
    std::size_t scores;  // capacity of the score region
    std::size_t accum;   // offset of the dk accumulator (dv follows it)
    std::size_t total;
};
Layout layout(const Problem& problem);

// Query heads per chunk for a sequence of length len: as many as fit the score region.
int chunk_heads(const Problem& problem, const Layout& layout, int len);

// Query heads h = first + n * group for n < count, all in one chunk. They share their index
// within the kv group, so they read distinct kv heads and write distinct dk/dv rows: one
// strided batched GEMM covers them, with constant strides for every operand.
struct HeadSet {
    int first;
    int count;
};
// The head sets of chunk [h0, h1), in increasing index within the group: the set holding a kv
// head's first query head always comes before the others of that group.
std::vector<HeadSet> head_sets(int h0, int h1, int group);

}  // namespace moba::dense_cublas::detail
