// What the naive kernels accept and the workspaces they need. The kernels themselves live in
// gating.cu, forward.cu and backward.cu.
#include <exception>
#include <stdexcept>
#include <string>

#include "kernels/naive/common.cuh"
#include "kernels/naive/naive.hpp"

namespace moba::naive {

Support can_implement(const Problem& problem) {
    try {
        problem.validate();
    } catch (const std::exception& e) {
        return Support::no(e.what());
    }
    if (problem.head_dim > kMaxHeadDim) {
        return Support::no("head dim " + std::to_string(problem.head_dim) +
                           " exceeds the naive kernels' maximum " + std::to_string(kMaxHeadDim) +
                           " (8 row chunks of 32 per lane)");
    }
    return Support::yes();
}

// Block means kbar [total/Bs + B, Hkv, D] fp32 (slot layout in common.cuh). 0 for a refused
// problem, whose launch throws anyway.
std::size_t gating_workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    const std::int64_t slots =
        detail::kbar_slots(problem.total_tokens(), problem.block, problem.batch());
    return static_cast<std::size_t>(slots) * problem.heads_kv * problem.head_dim * sizeof(float);
}

// Backward's Delta [Hq, total] fp32; the forward needs none but shares the size.
std::size_t attention_workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    return static_cast<std::size_t>(problem.lse_elems()) * sizeof(float);
}

namespace detail {

void check_problem(const Problem& problem) {
    const Support support = can_implement(problem);
    if (!support.ok) throw std::invalid_argument("naive kernels: " + support.reason);
}

}  // namespace detail

}  // namespace moba::naive
