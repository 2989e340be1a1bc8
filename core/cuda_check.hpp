// One way to fail on CUDA errors: the macro stringifies the failing call with file and
// line and throws, so tests and the CLI report it instead of crashing.
#pragma once

#include <stdexcept>
#include <string>

#include <cuda_runtime_api.h>

namespace moba {

class CudaError : public std::runtime_error {
public:
    CudaError(cudaError_t code, const char* call, const char* file, int line)
        : std::runtime_error(std::string(call) + " failed at " + file + ":" +
                             std::to_string(line) + ": " + cudaGetErrorName(code) + " (" +
                             cudaGetErrorString(code) + ")"),
          code_(code) {}
    cudaError_t code() const { return code_; }

private:
    cudaError_t code_;
};

}  // namespace moba

#define MOBA_CUDA_CALL(call)                                                \
    do {                                                                    \
        const cudaError_t moba_status_ = (call);                            \
        if (moba_status_ != cudaSuccess) {                                  \
            (void)cudaGetLastError(); /* clear the sticky-free error */     \
            throw ::moba::CudaError(moba_status_, #call, __FILE__, __LINE__); \
        }                                                                   \
    } while (0)

// After every kernel launch: catches bad launch configurations immediately.
#define MOBA_CHECK_LAUNCH() MOBA_CUDA_CALL(cudaGetLastError())
