// Internal to reference/: the walk over sampled query rows that rows.cpp (forward) and
// backward_rows.cpp (backward) share: the rows checked against the problem, split into work
// items of a page's worth of kv heads, and the keys each row attends visited in the order of
// detail::for_each_key per head (so sums run in the order of the full-pass functions).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/common.hpp"
#include "reference/reference.hpp"

namespace moba::ref::detail {

constexpr std::int64_t kItemBytes = 4096;  // bytes of k (and of v) per key a work item reads

// Scratch of one worker range for walking the selections of a row's heads.
struct Walk {
    std::vector<int> cursor;  // per head: its next selection slot
    std::vector<int> heads;   // the heads that select the current block
    explicit Walk(int heads_q) : cursor(heads_q), heads(heads_q) {}
};

// The requested rows, checked against the problem, and how they split into work items.
class Rows {
public:
    Rows(const Problem& problem, const RowInputs& in)
        : shape_(problem), in_(in), count_(static_cast<std::int64_t>(in.tokens.size())) {
        problem.validate();
        detail::check_size("q_rows", in.q_rows.size(), count_ * shape_.heads_q * shape_.dim);
        if (in.k == nullptr || in.v == nullptr) {
            throw std::invalid_argument("row inputs lack k or v (null pointer)");
        }
        detail::check_size("k", in.k->size(), problem.kv_elems());
        detail::check_size("v", in.v->size(), problem.kv_elems());
        full_ = in.sel_rows.slots == 0;
        if (full_) {
            detail::check_size("sel_rows (no slots: full causal)", in.sel_rows.blocks.size(), 0);
        } else {
            if (in.sel_rows.slots != shape_.slots) {
                throw std::invalid_argument("sel_rows has " + std::to_string(in.sel_rows.slots) +
                                            " slots, the problem needs " +
                                            std::to_string(shape_.slots) + " (or 0: full causal)");
            }
            detail::check_size("sel_rows", in.sel_rows.blocks.size(),
                               count_ * shape_.heads_q * shape_.slots);
        }
        start_.resize(in.tokens.size());
        for (std::int64_t r = 0; r < count_; ++r) {
            const std::int64_t t = in.tokens[r];
            if (t < 0 || t >= shape_.total) {
                throw std::invalid_argument("row " + std::to_string(r) + " names token " +
                                            std::to_string(t) + ", the problem has " +
                                            std::to_string(shape_.total) + " tokens");
            }
            start_[r] = shape_.cu[shape_.sequence_of(t)];
            if (full_) continue;
            const auto own = static_cast<std::int32_t>((t - start_[r]) / shape_.block);
            for (int h = 0; h < shape_.heads_q; ++h) {
                detail::check_selection_row(shape_, sel(r, h), t, h, own);
            }
        }
        const std::int64_t head_bytes = std::int64_t{shape_.dim} * std::int64_t{sizeof(float)};
        kv_per_item_ =
            static_cast<int>(std::clamp<std::int64_t>(kItemBytes / head_bytes, 1, shape_.heads_kv));
        items_per_row_ = (shape_.heads_kv + kv_per_item_ - 1) / kv_per_item_;
    }

    const Shape& shape() const { return shape_; }
    std::int64_t count() const { return count_; }
    std::int64_t items() const { return count_ * items_per_row_; }
    std::int64_t row_of(std::int64_t item) const { return item / items_per_row_; }
    // Query heads [first, last) of work item `item`: those of its kv heads.
    int first_head(std::int64_t item) const {
        return static_cast<int>(item % items_per_row_) * kv_per_item_ * shape_.group;
    }
    int last_head(std::int64_t item) const {
        return std::min(first_head(item) + kv_per_item_ * shape_.group, shape_.heads_q);
    }

    // Offset of row r, head h in [T, Hq, D].
    std::int64_t q_offset(std::int64_t r, int h) const {
        return (r * shape_.heads_q + h) * shape_.dim;
    }
    const float* q(std::int64_t r, int h) const { return in_.q_rows.data() + q_offset(r, h); }
    // Key / value row of local key j of row r's sequence for query head h, read in place.
    const float* k(std::int64_t r, std::int64_t j, int h) const {
        return in_.k->data() + shape_.kv_row(start_[r] + j, h / shape_.group);
    }
    const float* v(std::int64_t r, std::int64_t j, int h) const {
        return in_.v->data() + shape_.kv_row(start_[r] + j, h / shape_.group);
    }

    // Calls visit(j, h) for every local key j row r attends with a head h in [h0, h1): keys
    // ascending, and for each key the heads that attend it ascending. Per head that is the
    // order of detail::for_each_key; per key the heads read one contiguous stretch of k / v.
    template <class F>
    void for_each_key(std::int64_t r, int h0, int h1, Walk& walk, F&& visit) const {
        const std::int64_t i = in_.tokens[r] - start_[r];
        if (full_) {
            for (std::int64_t j = 0; j <= i; ++j) {
                for (int h = h0; h < h1; ++h) visit(j, h);
            }
            return;
        }
        std::fill(walk.cursor.begin() + h0, walk.cursor.begin() + h1, 0);
        for (;;) {  // the blocks any of the heads selects, ascending
            std::int32_t block = std::numeric_limits<std::int32_t>::max();
            for (int h = h0; h < h1; ++h) {
                const int slot = walk.cursor[h];
                if (slot < shape_.slots && sel(r, h)[slot] >= 0) {
                    block = std::min(block, sel(r, h)[slot]);
                }
            }
            if (block == std::numeric_limits<std::int32_t>::max()) return;
            std::size_t n = 0;
            for (int h = h0; h < h1; ++h) {
                const int slot = walk.cursor[h];
                if (slot < shape_.slots && sel(r, h)[slot] == block) {
                    walk.heads[n++] = h;
                    ++walk.cursor[h];
                }
            }
            const std::int64_t j0 = std::int64_t{block} * shape_.block;
            const std::int64_t j1 = std::min(j0 + shape_.block, i + 1);
            for (std::int64_t j = j0; j < j1; ++j) {
                for (std::size_t m = 0; m < n; ++m) visit(j, walk.heads[m]);
            }
        }
    }

    // Row r's packed token, the first token of its sequence, and its selection row of head h
    // (only when !full()).
    std::int64_t token(std::int64_t r) const { return in_.tokens[r]; }
    std::int64_t start(std::int64_t r) const { return start_[r]; }
    bool full() const { return full_; }
    const std::int32_t* sel(std::int64_t r, int h) const {
        return in_.sel_rows.blocks.data() + (r * shape_.heads_q + h) * shape_.slots;
    }

private:

    Shape shape_;
    const RowInputs& in_;
    std::int64_t count_;
    bool full_ = true;
    std::vector<std::int64_t> start_;  // [T] first token of each row's sequence
    int kv_per_item_ = 1;              // kv heads of one work item
    int items_per_row_ = 1;
};

}  // namespace moba::ref::detail
