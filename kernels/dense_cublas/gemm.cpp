#include "kernels/dense_cublas/gemm.hpp"

#include "kernels/dense_cublas/cublas_check.hpp"

namespace moba::dense_cublas::detail {

cudaDataType_t cuda_type(DType dtype) {
    switch (dtype) {
        case DType::bf16: return CUDA_R_16BF;
        case DType::f16: return CUDA_R_16F;
        case DType::f32: return CUDA_R_32F;
    }
    return CUDA_R_32F;
}

void gemm(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int m,
          int n_cols, int k, float alpha, const Operand& a, const Operand& b, float beta,
          const Output& c, int batch) {
    MOBA_CUBLAS_CALL(cublasGemmStridedBatchedEx(
        handle, op_a, op_b, m, n_cols, k, &alpha, a.ptr, a.type, a.ld, a.stride, b.ptr, b.type,
        b.ld, b.stride, &beta, c.ptr, c.type, c.ld, c.stride, batch, CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
}

}  // namespace moba::dense_cublas::detail
