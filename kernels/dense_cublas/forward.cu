// Dense causal forward through cuBLAS, per sequence and per chunk of query heads:
//   S^T = K Q^T      fp32 scores [heads, L, ld] (batched GEMM per head set, plan.hpp)
//   softmax_rows     P = softmax(scale S) over j <= i, rounded to the dtype; lse
//   O^T = V^T P^T    written to out in the dtype (fp32 accumulation)
// The selection is ignored: this is full causal attention.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/dense_cublas/dense_cublas.hpp"
#include "kernels/dense_cublas/handle.hpp"
#include "kernels/dense_cublas/operands.hpp"

namespace moba::dense_cublas {

void forward(const AttentionArgs& args) {
    using namespace detail;
    const Problem& problem = args.problem;
    check_problem(problem);
    const Layout plan = layout(problem);
    if (args.workspace == nullptr)
        throw std::invalid_argument("dense_cublas forward needs a workspace of " +
                                    std::to_string(plan.total) + " bytes");
    const cublasHandle_t handle = cublas_handle(args.stream);
    const std::vector<std::int32_t> cu = problem.cu_seqlens();
    const int d = problem.head_dim;
    for (int b = 0; b < problem.batch(); ++b) {
        const Sequence seq{problem, cu[b], problem.seqlens[b], cuda_type(problem.dtype),
                           dtype_bytes(problem.dtype)};
        const int len = seq.len;
        const int chunk = chunk_heads(problem, plan, len);
        for (int h0 = 0; h0 < problem.heads_q; h0 += chunk) {
            const int h1 = std::min(problem.heads_q, h0 + chunk);
            const ScoreRows rows = score_rows(args, seq, h0, h1);
            const std::vector<HeadSet> sets = head_sets(h0, h1, problem.group());
            for (const HeadSet& set : sets)  // S^T [keys, queries] = K Q^T
                gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, len, len, d, 1.0f,
                     seq.kv_heads(args.k, set), seq.query_heads(args.q, set), 0.0f,
                     scores_of(rows, seq, set, h0), set.count);
            softmax_rows(problem.dtype, rows, args.stream);
            for (const HeadSet& set : sets)  // O^T [D, queries] = V^T P^T
                gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, d, len, len, 1.0f,
                     seq.kv_heads(args.v, set), probs_of(rows, seq, set, h0), 0.0f,
                     seq.query_heads(args.out, set), set.count);
        }
    }
}

}  // namespace moba::dense_cublas
