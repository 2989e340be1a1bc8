// The key sample of the backward check: per-block attending work from the selection, then the
// budgeted choice of blocks and of keys inside them.
#include "harness/key_sampling.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

namespace moba {
namespace {

// Blocks of every sequence numbered globally: sequence s owns [first[s], first[s + 1]).
struct BlockIndex {
    std::vector<std::int32_t> cu;
    std::vector<std::int64_t> first;
    int block;
    explicit BlockIndex(const Problem& p) : cu(p.cu_seqlens()), first(p.batch() + 1, 0), block(p.block) {
        for (int s = 0; s < p.batch(); ++s) first[s + 1] = first[s] + (cu[s + 1] - cu[s] + block - 1) / block;
    }
    int seq_of_block(std::int64_t g) const {
        return static_cast<int>(std::upper_bound(first.begin(), first.end(), g) - first.begin()) - 1;
    }
};

// Keys attended by (token at local position i, selection row), or i + 1 for full causal.
std::int64_t attended_keys(const Problem& p, const Selection* sel, std::int64_t token, int h, std::int64_t i) {
    if (sel == nullptr) return i + 1;
    const std::int32_t* row = sel->blocks.data() + (token * p.heads_q + h) * sel->slots;
    std::int64_t keys = 0;
    for (int slot = 0; slot < sel->slots && row[slot] >= 0; ++slot) {
        const std::int64_t j0 = std::int64_t{row[slot]} * p.block;
        keys += std::min<std::int64_t>(j0 + p.block, i + 1) - j0;
    }
    return keys;
}

bool selects(const Problem& p, const Selection* sel, std::int64_t token, int h, std::int64_t block) {
    if (sel == nullptr) return true;
    const std::int32_t* row = sel->blocks.data() + (token * p.heads_q + h) * sel->slots;
    for (int slot = 0; slot < sel->slots && row[slot] >= 0; ++slot)
        if (row[slot] == block) return true;
    return false;
}

}  // namespace

KeySample sample_keys(const Problem& p, const Selection* sel, double budget, int max_blocks, int keys_per_block,
                      std::uint64_t seed) {
    p.validate();
    if (sel != nullptr && (sel->slots != p.sel_slots() ||
                           static_cast<std::int64_t>(sel->blocks.size()) != p.sel_elems()))
        throw std::invalid_argument("sample_keys: the selection does not fit the problem");
    if (max_blocks < 1 || keys_per_block < 2) throw std::invalid_argument("sample_keys: max_blocks >= 1, keys_per_block >= 2");
    const BlockIndex index(p);
    const std::int64_t blocks = index.first.back();
    const double dim = p.head_dim;
    std::vector<KeyBlock> table(static_cast<std::size_t>(blocks));
    for (std::int64_t g = 0; g < blocks; ++g) {
        table[g].seq = index.seq_of_block(g);
        table[g].block = g - index.first[table[g].seq];
    }
    // The pairs of later blocks' rows that select a block, and their work: what a key of the
    // block costs beyond the block's own rows at or after it (the block tails below).
    std::vector<KeyBlock> later = table;
    if (sel == nullptr) {
        // Full causal: block b of a sequence of length L is attended by every query i >= b * Bs
        // with every head, each attending i + 1 keys.
        auto triangle = [](double n) { return n * (n + 1) / 2; };
        for (std::int64_t g = 0; g < blocks; ++g) {
            KeyBlock& b = table[g];
            const double len = index.cu[b.seq + 1] - index.cu[b.seq];
            const double from = static_cast<double>(b.block) * p.block;
            const double end = std::min(from + p.block, len);
            b.attending_pairs = static_cast<std::int64_t>(p.heads_q * (len - from));
            b.work = p.heads_q * (triangle(len) - triangle(from)) * dim;
            later[g].attending_pairs = static_cast<std::int64_t>(p.heads_q * (len - end));
            later[g].work = p.heads_q * (triangle(len) - triangle(end)) * dim;
        }
    } else {
        for (int s = 0; s < p.batch(); ++s)
            for (std::int64_t t = index.cu[s]; t < index.cu[s + 1]; ++t)
                for (int h = 0; h < p.heads_q; ++h) {
                    const double keys = static_cast<double>(attended_keys(p, sel, t, h, t - index.cu[s]));
                    const std::int32_t* row = sel->blocks.data() + (t * p.heads_q + h) * sel->slots;
                    const std::int64_t own = (t - index.cu[s]) / p.block;
                    for (int slot = 0; slot < sel->slots && row[slot] >= 0; ++slot) {
                        const std::int64_t g = index.first[s] + row[slot];
                        ++table[g].attending_pairs;
                        table[g].work += keys * dim;
                        if (row[slot] != own) {
                            ++later[g].attending_pairs;
                            later[g].work += keys * dim;
                        }
                    }
                }
    }

    KeySample out;
    out.blocks_total = blocks;
    std::int64_t most = 0;
    for (std::int64_t g = 0; g < blocks; ++g) {
        if (table[g].attending_pairs > table[most].attending_pairs) most = g;
        out.blocks_over_budget += table[g].work > budget;
    }
    out.most_attended = table[most];
    std::mt19937_64 rng(seed ^ 0xb10c5ULL);
    std::vector<std::int64_t> order(static_cast<std::size_t>(blocks));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    std::stable_partition(order.begin(), order.end(), [&](std::int64_t g) { return g == most; });

    // (first key token, block) of each chosen block: its attending rows are those of its first key.
    std::vector<std::pair<std::int64_t, std::int64_t>> chosen;
    for (std::int64_t g : order) {
        if (static_cast<int>(out.blocks.size()) == max_blocks) break;
        const KeyBlock& b = table[g];
        if (b.work > budget - out.work) continue;
        out.blocks.push_back(b);
        out.work += b.work;
        out.most_attended_checked = out.most_attended_checked || g == most;
        const std::int64_t t0 = index.cu[b.seq] + b.block * p.block;
        const std::int64_t t1 = std::min<std::int64_t>(t0 + p.block, index.cu[b.seq + 1]);  // exclusive
        std::vector<std::int64_t> keys{t0, t1 - 1};
        std::uniform_int_distribution<std::int64_t> inside(t0, t1 - 1);
        for (int tries = 0; static_cast<int>(keys.size()) < keys_per_block && tries < 4 * keys_per_block; ++tries) {
            const std::int64_t t = inside(rng);
            if (std::find(keys.begin(), keys.end(), t) == keys.end()) keys.push_back(t);
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        out.keys.insert(out.keys.end(), keys.begin(), keys.end());
        chosen.emplace_back(t0, b.block);
    }
    if (out.blocks.empty()) {
        // Block tails: a key near a block's end is attended by the block's own rows at or after
        // it and by the later rows that select the block, so its dk / dv still sum over the
        // sparse path (gathered rows of other blocks) when the whole block is over budget, as
        // every block is at long lengths. Only blocks that later rows select: the tail of one
        // nobody else selects is what the last tokens below already check. Same order as above;
        // a block is taken when its later rows and its last token's rows fit, then keys from its
        // last token back while their own rows fit, keys_per_block at most.
        for (std::int64_t g : order) {
            if (static_cast<int>(out.blocks.size()) == max_blocks) break;
            if (later[g].attending_pairs == 0 || later[g].work > budget - out.work) continue;
            KeyBlock tail = later[g];
            const std::int64_t t0 = index.cu[tail.seq] + tail.block * p.block;
            const std::int64_t t1 = std::min<std::int64_t>(t0 + p.block, index.cu[tail.seq + 1]);  // exclusive
            std::vector<std::int64_t> keys;
            for (std::int64_t t = t1 - 1; t >= t0 && static_cast<int>(keys.size()) < keys_per_block; --t) {
                double work = 0;
                std::int64_t pairs = 0;
                for (int h = 0; h < p.heads_q; ++h)
                    if (selects(p, sel, t, h, tail.block)) {
                        ++pairs;
                        work += static_cast<double>(attended_keys(p, sel, t, h, t - index.cu[tail.seq])) * dim;
                    }
                if (tail.work + work > budget - out.work) break;
                tail.work += work;
                tail.attending_pairs += pairs;
                keys.push_back(t);
            }
            if (keys.empty()) continue;
            out.block_tails = true;
            out.blocks.push_back(tail);
            out.work += tail.work;
            out.most_attended_checked = out.most_attended_checked || g == most;
            out.keys.insert(out.keys.end(), keys.begin(), keys.end());
            chosen.emplace_back(keys.back(), tail.block);  // the tail's first key
        }
    }
    if (out.blocks.empty()) {
        // The tail of each sequence's last block: a key there is attended by exactly the rows at
        // or after it (the block is their own, always selected), so the last m keys cost the last
        // m rows' work. Taken from the end while it fits (at most the keys the blocks would give),
        // so a long sequence's check still covers keys summed over several rows and heads.
        out.last_tokens_only = true;
        const int most_keys = keys_per_block * max_blocks;
        for (int s = 0; s < p.batch(); ++s) {
            const std::int64_t end = index.cu[s + 1], len = end - index.cu[s];
            if (len == 0) continue;
            const std::int64_t last_block_start = index.cu[s] + (len - 1) / p.block * p.block;
            std::int64_t from = end;
            for (std::int64_t t = end - 1; t >= last_block_start && end - t <= most_keys; --t) {
                double work = 0;
                for (int h = 0; h < p.heads_q; ++h)
                    work += static_cast<double>(attended_keys(p, sel, t, h, t - index.cu[s])) * dim;
                if (work > budget - out.work) break;
                out.work += work;
                out.keys.push_back(t);
                from = t;
            }
            if (from < end) chosen.emplace_back(from, (from - index.cu[s]) / p.block);
        }
    }
    std::sort(out.keys.begin(), out.keys.end());

    // Attending query tokens: at or after the first key of a chosen block (same sequence),
    // selecting its block with some head.
    std::vector<char> attending(static_cast<std::size_t>(p.total_tokens()), 0);
    for (const auto& [from, block] : chosen) {
        const int s = static_cast<int>(std::upper_bound(index.cu.begin(), index.cu.end(), from) - index.cu.begin()) - 1;
        for (std::int64_t t = from; t < index.cu[s + 1]; ++t) {
            if (attending[t]) continue;
            for (int h = 0; h < p.heads_q && !attending[t]; ++h) attending[t] = selects(p, sel, t, h, block);
        }
    }
    for (std::int64_t t = 0; t < p.total_tokens(); ++t)
        if (attending[t]) out.query_tokens.push_back(t);
    return out;
}

}  // namespace moba
