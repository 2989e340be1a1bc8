// The KV bytes a MoBA decode step reads (SEMANTICS.md §9.1): from the float64 selection of a
// decode batch's new tokens, per request and kv group, the distinct blocks the group's heads
// select together (what a kernel that loads each block once per kv group reads), against dense
// decode (every cached token) and against the ideal (the heads agree: one head's blocks). Also
// the two ways a group could share one selection: `union` (every head attends the union: the
// same IO, more compute) and `vote` (the group's k most chosen blocks: k blocks of IO, some of
// each head's own choices lost). Pure accounting on a given selection; no attention is run.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensors.hpp"
#include "reference/decode.hpp"

namespace moba {

// One (request, kv group) at this step. Bytes count K and V of the group's kv head:
// tokens x D x 2 x element bytes, a block's tokens being those in the cache (a partial own block
// counts its actual tokens).
struct GroupIo {
    int request = 0;
    int group = 0;
    std::int64_t distinct_blocks = 0;  // union over the request's new tokens and the group's heads
    std::int64_t measured_bytes = 0;   // bytes of those blocks
    std::int64_t ideal_bytes = 0;      // the largest one head's union over the new tokens
    std::int64_t dense_bytes = 0;      // every cached token of the request
    std::int64_t vote_blocks = 0;      // union over the new tokens of the voted selections
    std::int64_t vote_bytes = 0;
    std::int64_t head_rows = 0;           // (new token, query head) pairs of the group
    std::int64_t union_extra_blocks = 0;  // summed over head_rows: |group union| - |own selection|
    double vote_recall_sum = 0;           // summed over head_rows: recall of the voted selection
};

struct DecodeIo {
    std::vector<GroupIo> groups;  // request-major, then kv group
    std::int64_t measured_bytes = 0, ideal_bytes = 0, dense_bytes = 0, vote_bytes = 0;
    std::int64_t head_rows = 0;

    double distinct_blocks_mean() const;         // over (request, group)
    double measured_ratio() const;               // measured_bytes / dense_bytes
    double ideal_ratio() const;                  // ideal_bytes / dense_bytes
    double vote_ratio() const;                   // vote_bytes / dense_bytes
    double union_extra_blocks_per_head() const;  // mean over (new token, query head)
    double vote_recall() const;                  // mean over (new token, query head)
};

// float64 gating score of past block `block` for new token `row` (index into the batch's new
// tokens, request by request) and query head `head`: q . kbar, as the reference's gating scores it.
using DecodeBlockScore = std::function<double(std::int64_t row, int head, int block)>;

// selection [total_q, Hq, slots]: the new tokens' selections (decode_forward's or gating_rows'),
// each ascending, -1 padded, holding the token's own block and nothing after it. `score` breaks
// vote ties (summed over the group's heads). Throws std::invalid_argument naming the row and head
// of a selection not of that form, or naming the sizes when they do not match the batch.
DecodeIo decode_io(const ref::DecodeBatch& batch, const Selection& selection,
                   const DecodeBlockScore& score);

}  // namespace moba
