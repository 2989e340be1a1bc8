// Head passes: the MoBA forward and backward run over ranges of kv heads, one after another, so
// their fp32 accumulators (the forward's O, m, l; the backward's dQ) and the block lists need only
// one range's rows, not [total, Hq]. At 1M tokens with 32 query / 8 kv heads the whole-problem
// accumulator is 16 GiB beside dense attention's 40 GiB; one kv group's is 2 GiB (kernels/NOTES.md,
// "Memory target"). A pass covers whole kv groups, so the backward's dK/dV of a kv head (a sum over
// all its query heads) is finished inside one pass.
// Problems whose accumulator fits the budget run as one pass, exactly as before: the passes only
// change which rows a launch covers, never the arithmetic of a row (chunked and one-pass results
// are bitwise equal).
#pragma once

#include <algorithm>
#include <cstddef>

#include "core/problem.hpp"

namespace moba::sparse {

// kv heads [kv0, kv0 + kv_heads) and their query heads [q0(), q0() + q_heads()).
struct HeadPass {
    int kv0;
    int kv_heads;
    int group;  // query heads per kv head
    int q0() const { return kv0 * group; }
    int q_heads() const { return kv_heads * group; }
};

// Every head in one pass.
inline HeadPass all_heads(const Problem& problem) {
    return {0, problem.heads_kv, problem.group()};
}

// The environment variable of the budget below. Reports name it beside their commands
// (harness/report.hpp: kernel_env_prefix), since it changes how the kernels run.
inline constexpr const char* kAccumulatorBudgetEnv = "MOBA_ACCUMULATOR_BUDGET_MIB";

// Bytes the accumulators may take: MOBA_ACCUMULATOR_BUDGET_MIB from the environment (a whole
// number of MiB; 0 makes every pass one kv head), 4096 MiB without it. Read at every call, so a
// test can change it; the workspace sizes and the launches both read it, so change it only
// between calls that also ask for the workspace size again (AttentionArgs carries no size). Throws std::invalid_argument naming the value when it is not a whole number.
std::size_t accumulator_budget_bytes();

// The kv heads of each pass: the fewest passes whose forward accumulators (O and (m, l), the
// larger of the two accumulators) each fit accumulator_budget_bytes() (a pass holds at least one
// kv head, so one kv head over the budget still runs), then as even as they go: ceil(heads_kv /
// passes). Requires a valid problem.
int kv_heads_per_pass(const Problem& problem);

// Calls visit(HeadPass) for the passes in kv-head order; the last may be smaller.
template <typename Visit>
void for_each_head_pass(const Problem& problem, Visit&& visit) {
    const int per = kv_heads_per_pass(problem);
    for (int kv0 = 0; kv0 < problem.heads_kv; kv0 += per)
        visit(HeadPass{kv0, std::min(per, problem.heads_kv - kv0), problem.group()});
}

}  // namespace moba::sparse
