#include "harness/cp_plan.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "kernels/moba/head_passes.hpp"

namespace moba {
namespace {

// Full causal pairs of query rows [begin, end) of one sequence, one head: sum of (i + 1).
double causal_pairs(std::int64_t begin, std::int64_t end) {
    auto triangle = [](double n) { return n * (n + 1) / 2; };
    return triangle(static_cast<double>(end)) - triangle(static_cast<double>(begin));
}

double imbalance(const std::vector<CpRank>& ranks, double CpRank::*field) {
    double most = 0, sum = 0;
    for (const CpRank& r : ranks) {
        most = std::max(most, r.*field);
        sum += r.*field;
    }
    return sum > 0 ? most / (sum / static_cast<double>(ranks.size())) : 0;
}

}  // namespace

Support cp_can_shard(const Problem& problem, int ranks) {
    if (ranks < 1) return Support::no(fmt::format("ranks {} must be at least 1", ranks));
    if (problem.batch() != 1)
        return Support::no(fmt::format("context parallelism shards one sequence, not a batch of {}", problem.batch()));
    const std::int64_t len = problem.seqlens[0];
    const std::int64_t chunks = 2 * static_cast<std::int64_t>(ranks);
    if (len % chunks != 0 || (len / chunks) % problem.block != 0)
        return Support::no(fmt::format("length {} does not split into {} chunks (2 per rank) of whole blocks of {}: "
                                       "a chunk would be {} tokens",
                                       len, chunks, problem.block, static_cast<double>(len) / static_cast<double>(chunks)));
    return Support::yes();
}

CpPlan zigzag_plan(const Problem& p, int ranks, const Selection* sel) {
    p.validate();
    if (const Support s = cp_can_shard(p, ranks); !s.ok) throw std::invalid_argument("context parallel: " + s.reason);
    if (sel != nullptr && (sel->slots != p.sel_slots() || static_cast<std::int64_t>(sel->blocks.size()) != p.sel_elems()))
        throw std::invalid_argument("context parallel: the selection does not fit the problem");
    CpPlan plan;
    plan.ranks = ranks;
    plan.chunk = p.seqlens[0] / (2 * static_cast<std::int64_t>(ranks));
    const std::int64_t blocks = p.max_blocks();
    const std::int64_t blocks_per_chunk = plan.chunk / p.block;
    // Chunk c is held by rank c for c < R, by rank 2R - 1 - c after.
    auto owner_of_block = [&](std::int64_t b) {
        const std::int64_t c = b / blocks_per_chunk;
        return static_cast<int>(c < ranks ? c : 2 * ranks - 1 - c);
    };
    const double elem = static_cast<double>(dtype_bytes(p.dtype));
    const std::int64_t block_kv_bytes = 2 * static_cast<std::int64_t>(p.block) * p.head_dim * static_cast<std::int64_t>(elem);
    const std::int64_t means_bytes_per_block = static_cast<std::int64_t>(p.heads_kv) * p.head_dim * 4;

    for (int r = 0; r < ranks; ++r) {
        CpRank rank;
        rank.rank = r;
        const std::int64_t chunks[2] = {r, 2 * static_cast<std::int64_t>(ranks) - 1 - r};
        std::vector<char> needed(static_cast<std::size_t>(blocks * p.heads_kv), 0);  // remote (block, kv head)
        for (int i = 0; i < 2; ++i) {
            rank.chunk_begin[i] = chunks[i] * plan.chunk;
            rank.chunk_end[i] = rank.chunk_begin[i] + plan.chunk;
            rank.tokens += plan.chunk;
            rank.dense_pairs += p.heads_q * causal_pairs(rank.chunk_begin[i], rank.chunk_end[i]);
            if (sel == nullptr) continue;
            for (std::int64_t t = rank.chunk_begin[i]; t < rank.chunk_end[i]; ++t)
                for (int h = 0; h < p.heads_q; ++h) {
                    const std::int32_t* row = sel->blocks.data() + (t * p.heads_q + h) * sel->slots;
                    for (int slot = 0; slot < sel->slots && row[slot] >= 0; ++slot) {
                        const std::int64_t j0 = std::int64_t{row[slot]} * p.block;
                        rank.moba_pairs += static_cast<double>(std::min<std::int64_t>(j0 + p.block, t + 1) - j0);
                        if (owner_of_block(row[slot]) != r) needed[row[slot] * p.heads_kv + h / p.group()] = 1;
                    }
                }
        }
        rank.blocks_received = std::accumulate(needed.begin(), needed.end(), std::int64_t{0});
        rank.kv_bytes_received = rank.blocks_received * block_kv_bytes;
        rank.means_bytes_received = (blocks - 2 * blocks_per_chunk) * means_bytes_per_block;
        // A training step's buffers for this rank's tokens (kernels' layouts; SEMANTICS.md §6 measures
        // the single-GPU ones), plus what it receives. The fp32 accumulator and the block lists hold
        // one head pass's rows (kernels/moba/head_passes.hpp); the gating's block means are not counted.
        const double t = static_cast<double>(rank.tokens);
        const double q_elems = t * p.heads_q * p.head_dim, kv_elems = t * p.heads_kv * p.head_dim;
        const double rows = t * p.heads_q;
        Problem rank_problem = p;
        rank_problem.seqlens = {static_cast<int>(rank.tokens)};
        const double pass_rows = t * sparse::kv_heads_per_pass(rank_problem) * p.group();
        const double bytes = 4 * q_elems * elem + 4 * kv_elems * elem   // q, dout, out, dq; k, v, dk, dv
                             + rows * (4 + 8)                           // lse, row statistics
                             + pass_rows * (p.head_dim * 4 + 8)         // fp32 accumulator and (m, l)
                             + pass_rows * (p.sel_slots() - 1) * 4 * 2  // block lists: rows, sorted copy
                             + rows * p.sel_slots() * 4                 // selection
                             + static_cast<double>(rank.kv_bytes_received + rank.means_bytes_received);
        rank.moba_memory_bytes = static_cast<std::size_t>(bytes);
        plan.per_rank.push_back(rank);
    }
    plan.dense_imbalance = imbalance(plan.per_rank, &CpRank::dense_pairs);
    plan.moba_imbalance = imbalance(plan.per_rank, &CpRank::moba_pairs);
    return plan;
}

}  // namespace moba
