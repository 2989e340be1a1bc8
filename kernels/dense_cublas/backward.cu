// Dense causal backward through cuBLAS, per sequence and per chunk of query heads:
//   S^T = K Q^T                  recomputed fp32 scores
//   probability_rows             P = exp(scale S - lse) over j <= i, rounded to the dtype
//   dV^T += dO^T P               fp32 accumulator [L, Hkv, D]
//   dP^T = V dO^T                fp32, over the scores
//   score_grad_rows              dS = P (dP - Delta), Delta = dO . O, rounded, over P
//   dQ^T = scale K^T dS^T        written to dq in the dtype
//   dK^T += scale Q^T dS         fp32 accumulator [L, Hkv, D]
// then the accumulators are rounded into dk, dv. A kv head's accumulators are overwritten
// (beta 0) by the group's first query head and summed into (beta 1) by the others; the head
// sets' order (plan.hpp) puts the first head first.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/dense_cublas/dense_cublas.hpp"
#include "kernels/dense_cublas/handle.hpp"
#include "kernels/dense_cublas/operands.hpp"

namespace moba::dense_cublas {

void backward(const AttentionArgs& args) {
    using namespace detail;
    const Problem& problem = args.problem;
    check_problem(problem);
    const Layout plan = layout(problem);
    if (args.workspace == nullptr)
        throw std::invalid_argument("dense_cublas backward needs a workspace of " +
                                    std::to_string(plan.total) + " bytes");
    const cublasHandle_t handle = cublas_handle(args.stream);
    const std::vector<std::int32_t> cu = problem.cu_seqlens();
    const int d = problem.head_dim;
    const int group = problem.group();
    const float scale = static_cast<float>(problem.scale());
    const std::int64_t kv_token = static_cast<std::int64_t>(problem.heads_kv) * d;
    float* dk_acc = reinterpret_cast<float*>(static_cast<char*>(args.workspace) + plan.accum);
    float* dv_acc = dk_acc + problem.max_seqlen() * kv_token;
    for (int b = 0; b < problem.batch(); ++b) {
        const Sequence seq{problem, cu[b], problem.seqlens[b], cuda_type(problem.dtype),
                           dtype_bytes(problem.dtype)};
        const int len = seq.len;
        const int chunk = chunk_heads(problem, plan, len);
        for (int h0 = 0; h0 < problem.heads_q; h0 += chunk) {
            const int h1 = std::min(problem.heads_q, h0 + chunk);
            const ScoreRows rows = score_rows(args, seq, h0, h1);
            const std::vector<HeadSet> sets = head_sets(h0, h1, group);
            for (const HeadSet& set : sets)  // S^T [keys, queries] = K Q^T
                gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, len, len, d, 1.0f,
                     seq.kv_heads(args.k, set), seq.query_heads(args.q, set), 0.0f,
                     scores_of(rows, seq, set, h0), set.count);
            probability_rows(problem.dtype, rows, args.stream);
            for (const HeadSet& set : sets)  // dV^T [D, keys] (+)= dO^T P
                gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, d, len, len, 1.0f,
                     seq.query_heads(args.dout, set), probs_of(rows, seq, set, h0),
                     set.first % group == 0 ? 0.0f : 1.0f, seq.accumulator(dv_acc, set),
                     set.count);
            for (const HeadSet& set : sets)  // dP^T [keys, queries] = V dO^T
                gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, len, len, d, 1.0f,
                     seq.kv_heads(args.v, set), seq.query_heads(args.dout, set), 0.0f,
                     scores_of(rows, seq, set, h0), set.count);
            const HeadSet chunk_heads_set{h0, 1};
            const OutputRows outputs{seq.query_heads(static_cast<const void*>(args.out),
                                                     chunk_heads_set).ptr,
                                     seq.query_heads(args.dout, chunk_heads_set).ptr,
                                     static_cast<std::int64_t>(problem.heads_q) * d, d};
            score_grad_rows(problem.dtype, rows, outputs, args.stream);
            for (const HeadSet& set : sets)  // dQ^T [D, queries] = scale K^T dS^T
                gemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, d, len, len, scale,
                     seq.kv_heads(args.k, set), probs_of(rows, seq, set, h0), 0.0f,
                     seq.query_heads(args.dq, set), set.count);
            for (const HeadSet& set : sets)  // dK^T [D, keys] (+)= scale Q^T dS
                gemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, d, len, len, scale,
                     seq.query_heads(args.q, set), probs_of(rows, seq, set, h0),
                     set.first % group == 0 ? 0.0f : 1.0f, seq.accumulator(dk_acc, set),
                     set.count);
        }
        const std::int64_t count = len * kv_token;
        const std::int64_t at = seq.start * kv_token * static_cast<std::int64_t>(seq.elem_bytes);
        convert(problem.dtype, dk_acc, static_cast<char*>(args.dk) + at, count, args.stream);
        convert(problem.dtype, dv_acc, static_cast<char*>(args.dv) + at, count, args.stream);
    }
}

}  // namespace moba::dense_cublas
