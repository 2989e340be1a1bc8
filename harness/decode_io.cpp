#include "harness/decode_io.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

namespace moba {
namespace {

// Tokens of local block b in a cache of k_len tokens.
std::int64_t block_tokens(const Problem& p, int k_len, int b) {
    return std::min<std::int64_t>(static_cast<std::int64_t>(b + 1) * p.block, k_len) -
           static_cast<std::int64_t>(b) * p.block;
}

std::int64_t bytes_of(const Problem& p, int k_len, const std::set<int>& blocks) {
    std::int64_t tokens = 0;
    for (int b : blocks) tokens += block_tokens(p, k_len, b);
    return tokens * p.head_dim * 2 * static_cast<std::int64_t>(dtype_bytes(p.dtype));
}

// The blocks of one (row, head), checked to be of the form SEMANTICS.md §1 gives a selection.
std::vector<int> row_blocks(const Selection& sel, std::int64_t row, int head, int heads_q,
                            int own) {
    std::vector<int> blocks;
    const std::int32_t* s = sel.blocks.data() + (row * heads_q + head) * sel.slots;
    for (int i = 0; i < sel.slots && s[i] >= 0; ++i) {
        if (s[i] > own || (!blocks.empty() && s[i] <= blocks.back()))
            throw std::invalid_argument("selection row " + std::to_string(row) + ", head " +
                                        std::to_string(head) + ": block " + std::to_string(s[i]) +
                                        " is not ascending or lies after the own block " +
                                        std::to_string(own));
        blocks.push_back(s[i]);
    }
    if (blocks.empty() || blocks.back() != own)
        throw std::invalid_argument("selection row " + std::to_string(row) + ", head " +
                                    std::to_string(head) + " lacks its own block " +
                                    std::to_string(own));
    return blocks;
}

// The group's shared selection by vote: the own block, then the `taken` past blocks chosen by
// the most heads, ties to the larger summed score over the group's heads, then the lower index.
std::set<int> vote(const std::vector<std::vector<int>>& head_blocks, int own, int taken,
                   const std::function<double(int)>& group_score) {
    std::vector<int> votes(static_cast<std::size_t>(own), 0);
    for (const auto& blocks : head_blocks)
        for (int b : blocks)
            if (b != own) ++votes[static_cast<std::size_t>(b)];
    struct Candidate {
        int block, votes;
        double score;
    };
    std::vector<Candidate> candidates;
    for (int b = 0; b < own; ++b)
        if (votes[static_cast<std::size_t>(b)] > 0)
            candidates.push_back({b, votes[static_cast<std::size_t>(b)], group_score(b)});
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& c) {
        if (a.votes != c.votes) return a.votes > c.votes;
        if (a.score != c.score) return a.score > c.score;
        return a.block < c.block;
    });
    std::set<int> chosen{own};
    for (std::size_t i = 0; i < candidates.size() && static_cast<int>(i) < taken; ++i)
        chosen.insert(candidates[i].block);
    return chosen;
}

double ratio(std::int64_t num, std::int64_t den) {
    return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : 0.0;
}

}  // namespace

double DecodeIo::distinct_blocks_mean() const {
    std::int64_t sum = 0;
    for (const GroupIo& g : groups) sum += g.distinct_blocks;
    return groups.empty() ? 0.0 : static_cast<double>(sum) / static_cast<double>(groups.size());
}
double DecodeIo::measured_ratio() const { return ratio(measured_bytes, dense_bytes); }
double DecodeIo::ideal_ratio() const { return ratio(ideal_bytes, dense_bytes); }
double DecodeIo::vote_ratio() const { return ratio(vote_bytes, dense_bytes); }
double DecodeIo::union_extra_blocks_per_head() const {
    std::int64_t sum = 0;
    for (const GroupIo& g : groups) sum += g.union_extra_blocks;
    return ratio(sum, head_rows);
}
double DecodeIo::vote_recall() const {
    double sum = 0;
    for (const GroupIo& g : groups) sum += g.vote_recall_sum;
    return head_rows > 0 ? sum / static_cast<double>(head_rows) : 0.0;
}

DecodeIo decode_io(const ref::DecodeBatch& batch, const Selection& selection,
                   const DecodeBlockScore& score) {
    batch.validate();
    const Problem& p = batch.cache;
    const std::int64_t want = batch.total_q() * p.heads_q * selection.slots;
    if (selection.slots < 1 || static_cast<std::int64_t>(selection.blocks.size()) != want)
        throw std::invalid_argument(
            "selection has " + std::to_string(selection.blocks.size()) + " entries in " +
            std::to_string(selection.slots) + " slots; the batch's " +
            std::to_string(batch.total_q()) + " new tokens x " + std::to_string(p.heads_q) +
            " heads need slots >= 1 and slots x " + std::to_string(batch.total_q() * p.heads_q));
    const int group_size = p.group();
    DecodeIo io;
    std::int64_t first_row = 0;  // the request's first new token, in the batch's new tokens
    for (int r = 0; r < p.batch(); ++r) {
        const int k_len = p.seqlens[static_cast<std::size_t>(r)];
        const int q_len = batch.q_lens[static_cast<std::size_t>(r)];
        for (int g = 0; g < p.heads_kv; ++g) {
            GroupIo out;
            out.request = r;
            out.group = g;
            std::set<int> measured, voted;
            std::vector<std::set<int>> per_head(static_cast<std::size_t>(group_size));
            for (int t = 0; t < q_len; ++t) {
                const std::int64_t row = first_row + t;
                const int own = (k_len - q_len + t) / p.block;
                const int taken = std::min(p.topk - 1, own);
                std::vector<std::vector<int>> heads;
                std::set<int> token_union;
                for (int j = 0; j < group_size; ++j) {
                    heads.push_back(row_blocks(selection, row, g * group_size + j, p.heads_q, own));
                    token_union.insert(heads.back().begin(), heads.back().end());
                    per_head[static_cast<std::size_t>(j)].insert(heads.back().begin(),
                                                                 heads.back().end());
                }
                const std::set<int> shared = vote(heads, own, taken, [&](int b) {
                    double sum = 0;
                    for (int j = 0; j < group_size; ++j) sum += score(row, g * group_size + j, b);
                    return sum;
                });
                for (const auto& blocks : heads) {
                    out.union_extra_blocks +=
                        static_cast<std::int64_t>(token_union.size() - blocks.size());
                    const auto past = static_cast<std::int64_t>(blocks.size()) -
                                      1;  // the own block is always kept
                    std::int64_t kept = 0;
                    for (int b : blocks) kept += (b != own && shared.count(b)) ? 1 : 0;
                    out.vote_recall_sum +=
                        past > 0 ? static_cast<double>(kept) / static_cast<double>(past) : 1.0;
                }
                out.head_rows += group_size;
                measured.insert(token_union.begin(), token_union.end());
                voted.insert(shared.begin(), shared.end());
            }
            out.distinct_blocks = static_cast<std::int64_t>(measured.size());
            out.measured_bytes = bytes_of(p, k_len, measured);
            for (const auto& blocks : per_head)
                out.ideal_bytes = std::max(out.ideal_bytes, bytes_of(p, k_len, blocks));
            out.dense_bytes = static_cast<std::int64_t>(k_len) * p.head_dim * 2 *
                              static_cast<std::int64_t>(dtype_bytes(p.dtype));
            out.vote_blocks = static_cast<std::int64_t>(voted.size());
            out.vote_bytes = bytes_of(p, k_len, voted);
            io.measured_bytes += out.measured_bytes;
            io.ideal_bytes += out.ideal_bytes;
            io.dense_bytes += out.dense_bytes;
            io.vote_bytes += out.vote_bytes;
            io.head_rows += out.head_rows;
            io.groups.push_back(out);
        }
        first_row += q_len;
    }
    return io;
}

}  // namespace moba
