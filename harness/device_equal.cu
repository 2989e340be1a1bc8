#include "harness/device_equal.hpp"

#include <algorithm>

#include "core/cuda_check.hpp"

namespace moba {
namespace {

__global__ void differing_words_kernel(const std::uint32_t* a, const std::uint32_t* b, std::int64_t n,
                                       unsigned long long* count, unsigned long long* first) {
    const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
        if (a[i] != b[i]) {
            atomicAdd(count, 1ull);
            atomicMin(first, static_cast<unsigned long long>(i));
        }
    }
}

}  // namespace

WordDifference differing_words(const void* a, const void* b, std::int64_t words) {
    WordDifference d;
    if (words <= 0) return d;
    unsigned long long* counters = nullptr;  // [count, first]
    MOBA_CUDA_CALL(cudaMalloc(&counters, 2 * sizeof(unsigned long long)));
    unsigned long long host[2] = {0, ~0ull};
    try {
        MOBA_CUDA_CALL(cudaMemcpy(counters, host, sizeof host, cudaMemcpyHostToDevice));
        constexpr int kThreads = 256;
        const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((words + kThreads - 1) / kThreads, 132 * 64));
        differing_words_kernel<<<blocks, kThreads>>>(static_cast<const std::uint32_t*>(a),
                                                     static_cast<const std::uint32_t*>(b), words, counters,
                                                     counters + 1);
        MOBA_CHECK_LAUNCH();
        MOBA_CUDA_CALL(cudaMemcpy(host, counters, sizeof host, cudaMemcpyDeviceToHost));
    } catch (...) {
        cudaFree(counters);
        throw;
    }
    MOBA_CUDA_CALL(cudaFree(counters));
    d.count = static_cast<std::int64_t>(host[0]);
    d.first = host[0] == 0 ? -1 : static_cast<std::int64_t>(host[1]);
    return d;
}

}  // namespace moba
