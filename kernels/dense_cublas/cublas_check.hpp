// cuBLAS errors carry their call: MOBA_CUBLAS_CALL stringifies the failing call with file,
// line and status and throws, like MOBA_CUDA_CALL (core/cuda_check.hpp) for CUDA.
#pragma once

#include <stdexcept>
#include <string>

#include <cublas_v2.h>

namespace moba {

class CublasError : public std::runtime_error {
public:
    CublasError(cublasStatus_t status, const char* call, const char* file, int line)
        : std::runtime_error(std::string(call) + " failed at " + file + ":" +
                             std::to_string(line) + ": " + cublasGetStatusName(status) + " (" +
                             cublasGetStatusString(status) + ")"),
          status_(status) {}
    cublasStatus_t status() const { return status_; }

private:
    cublasStatus_t status_;
};

}  // namespace moba

#define MOBA_CUBLAS_CALL(call)                                                    \
    do {                                                                          \
        const cublasStatus_t moba_cublas_status_ = (call);                        \
        if (moba_cublas_status_ != CUBLAS_STATUS_SUCCESS)                         \
            throw ::moba::CublasError(moba_cublas_status_, #call, __FILE__, __LINE__); \
    } while (0)
