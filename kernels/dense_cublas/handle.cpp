#include "kernels/dense_cublas/handle.hpp"

#include <memory>
#include <mutex>
#include <vector>

#include "core/cuda_check.hpp"
#include "kernels/dense_cublas/cublas_check.hpp"

namespace moba::dense_cublas {
namespace {

// Owns one handle; destroyed at exit (a failure then is ignored: the runtime may be gone).
class Handle {
public:
    Handle() {
        MOBA_CUBLAS_CALL(cublasCreate(&handle_));
        // By default cuBLAS may reduce split-K partial sums in the output type: for O^T = V^T P^T
        // written in fp16/bf16 that is an extra rounding of partial sums over long key ranges,
        // which no plain implementation (SEMANTICS.md §5) makes. Found by the long suite
        // (fp16, peaked inputs, 8191-token sequence: one 64-row region 1.23x its bound, 2026-12-02).
        MOBA_CUBLAS_CALL(cublasSetMathMode(
            handle_, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    }
    ~Handle() { (void)cublasDestroy(handle_); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    cublasHandle_t get() const { return handle_; }

private:
    cublasHandle_t handle_ = nullptr;
};

}  // namespace

cublasHandle_t cublas_handle(cudaStream_t stream) {
    static std::mutex mutex;
    static std::vector<std::unique_ptr<Handle>> handles;  // indexed by device
    int device = 0;
    MOBA_CUDA_CALL(cudaGetDevice(&device));
    const std::lock_guard<std::mutex> lock(mutex);
    if (handles.size() <= static_cast<std::size_t>(device)) handles.resize(device + 1);
    auto& slot = handles[device];
    if (!slot) slot = std::make_unique<Handle>();
    MOBA_CUBLAS_CALL(cublasSetStream(slot->get(), stream));
    return slot->get();
}

}  // namespace moba::dense_cublas
