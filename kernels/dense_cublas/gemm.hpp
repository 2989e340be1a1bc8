// The one GEMM shape the dense path uses: cublasGemmStridedBatchedEx with fp32 compute
// (tensor cores for bf16/fp16 inputs), column-major operands as cuBLAS sees them.
// A row-major [tokens, H, D] tensor of one head is a column-major D x tokens matrix with
// ld = H * D; a row-major L x ld score matrix is its column-major transpose with ld = ld.
#pragma once

#include <cstdint>

#include <cublas_v2.h>

#include "core/problem.hpp"

namespace moba::dense_cublas::detail {

// A GEMM operand: base pointer of batch entry 0, element type, leading dimension, and the
// element stride between batch entries. Ptr is const void* for inputs, void* for the output.
template <typename Ptr>
struct Strided {
    Ptr ptr;
    cudaDataType_t type;
    int ld;
    std::int64_t stride;
};
using Operand = Strided<const void*>;
using Output = Strided<void*>;

cudaDataType_t cuda_type(DType dtype);

// c[n] = alpha * op_a(a[n]) * op_b(b[n]) + beta * c[n] for n < batch, c of size m x n_cols.
// With beta == 0, c is not read (it may hold poison).
void gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m,
          int n_cols, int k, float alpha, const Operand& a, const Operand& b, float beta,
          const Output& c, int batch);

}  // namespace moba::dense_cublas::detail
