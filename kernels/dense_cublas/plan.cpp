// What the dense cuBLAS path accepts, the workspace it needs, and how it cuts its work.
#include "kernels/dense_cublas/plan.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>

#include <fmt/format.h>

#include "kernels/dense_cublas/dense_cublas.hpp"
#include "kernels/support.hpp"

namespace moba::dense_cublas {

Support can_implement(const Problem& problem) {
    if (Support s = valid_bf16_or_fp16(problem, "dense_cublas"); !s.ok) return s;
    if (problem.head_dim % 8 != 0 || problem.head_dim > kMaxHeadDim)
        return Support::no(fmt::format(
            "head dim {} is not a multiple of 8 up to {} (16-byte aligned GEMM operands)",
            problem.head_dim, kMaxHeadDim));
    const int len = problem.max_seqlen();
    const std::size_t bytes = detail::head_score_bytes(len, problem.dtype);
    if (bytes > detail::kHeadScoreCap)
        return Support::no(fmt::format(
            "one head's {0}x{0} fp32 scores plus {1} probabilities at length {0} take {2:.1f} "
            "GiB, over the {3} GiB cap",
            len, to_string(problem.dtype), static_cast<double>(bytes) / (1 << 30),
            detail::kHeadScoreCap >> 30));
    return Support::yes();
}

std::size_t workspace_bytes(const Problem& problem) {
    if (!can_implement(problem).ok) return 0;
    return detail::layout(problem).total;
}

namespace detail {

void check_problem(const Problem& problem) {
    const Support support = can_implement(problem);
    if (!support.ok) throw std::invalid_argument("dense_cublas: " + support.reason);
}

int score_ld(int len) { return (len + 7) / 8 * 8; }

std::int64_t score_elems(int len) { return static_cast<std::int64_t>(len) * score_ld(len); }

std::size_t head_score_bytes(int len, DType dtype) {
    return static_cast<std::size_t>(score_elems(len)) * (sizeof(float) + dtype_bytes(dtype));
}

// Every region size is a multiple of 16 bytes (score_elems is a multiple of 8), so every
// matrix and accumulator starts 16-byte aligned in a cudaMalloc'd workspace.
Layout layout(const Problem& problem) {
    const std::size_t head = head_score_bytes(problem.max_seqlen(), problem.dtype);
    const std::size_t heads =
        std::clamp<std::size_t>(kScoreTarget / head, 1, static_cast<std::size_t>(problem.heads_q));
    const std::size_t accum = static_cast<std::size_t>(problem.max_seqlen()) * problem.heads_kv *
                              problem.head_dim * sizeof(float);
    return {heads * head, heads * head, heads * head + 2 * accum};
}

int chunk_heads(const Problem& problem, const Layout& layout, int len) {
    const std::size_t fit = layout.scores / head_score_bytes(len, problem.dtype);  // >= 1
    return static_cast<int>(std::min<std::size_t>(fit, static_cast<std::size_t>(problem.heads_q)));
}

std::vector<HeadSet> head_sets(int h0, int h1, int group) {
    std::vector<HeadSet> sets;
    for (int g = 0; g < group; ++g) {
        const int first = h0 + ((g - h0 % group) + group) % group;  // first h >= h0, h%group == g
        if (first < h1) sets.push_back({first, (h1 - 1 - first) / group + 1});
    }
    return sets;
}

}  // namespace detail
}  // namespace moba::dense_cublas
