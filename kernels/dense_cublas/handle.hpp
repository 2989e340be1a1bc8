// One cuBLAS handle per device, created on first use and reused for the life of the process.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace moba::dense_cublas {

// The current device's handle, set to launch on `stream`.
cublasHandle_t cublas_handle(cudaStream_t stream);

}  // namespace moba::dense_cublas
