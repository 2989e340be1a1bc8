// Which key tokens the backward check of `moba bench` samples (SEMANTICS.md §5.3). dk and dv of
// a key sum over every (query token, head) that attends it, and each of those rows needs its
// own float64 forward (lse and Delta): the cost of checking a key block is the attended keys of
// every (query, head) pair that selects it. Blocks are taken while that cost fits a budget;
// a popular block (a sink that every row selects) may not fit at large sizes, and the sample
// says so (blocks_over_budget, most_attended_checked) instead of skipping it silently.
// Pure and deterministic (seeded): tested on the CPU (suites/test_key_sampling.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"

namespace moba {

struct KeyBlock {
    int seq = 0;
    std::int64_t block = 0;            // local block index in its sequence
    std::int64_t attending_pairs = 0;  // (query token, query head) pairs that select it
    double work = 0;                   // their attended keys summed, times D
};

struct KeySample {
    std::vector<std::int64_t> keys;          // sampled key tokens (global), ascending
    std::vector<std::int64_t> query_tokens;  // tokens attending a sampled key with some head, ascending
    std::vector<KeyBlock> blocks;            // the key blocks the keys come from
    double work = 0;                         // their work summed (at most the budget)
    std::int64_t blocks_total = 0;           // key blocks of the problem
    std::int64_t blocks_over_budget = 0;     // blocks whose work alone exceeds the budget
    KeyBlock most_attended;                  // most attending pairs (lowest global index on ties)
    bool most_attended_checked = false;
    // No whole block fitted: the keys are the last tokens of blocks that later rows select, and
    // each of `blocks` holds its tail's figures (the pairs attending the tail's keys, their work).
    bool block_tails = false;
    // No block nor block tail fitted: the keys are the last tokens of sequences, as many of each
    // last block's tail as fit (a key there is attended by the rows at or after it only).
    bool last_tokens_only = false;
};

// The rule: the most attended block first, then every other block in a seeded random order; a
// block is taken when its work fits what is left of `budget`, until `max_blocks` are taken. Its
// keys: its first and last token and random others, `keys_per_block` at most. When no block fits,
// block tails: in the same order, blocks that later rows select whose later rows' work and last
// token's rows fit, `max_blocks` at most; keys from each one's last token back while its own
// rows' work fits, `keys_per_block` at most. When no tail fits either, the tail of each
// sequence's last block, from its last token back while the attending rows' work fits
// (keys_per_block * max_blocks keys per sequence at most). `sel`: the full selection
// [total, Hq, slots] (host), or null for full causal attention (every block up to the own one).
KeySample sample_keys(const Problem& problem, const Selection* sel, double budget, int max_blocks,
                      int keys_per_block, std::uint64_t seed);

}  // namespace moba
