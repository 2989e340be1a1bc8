#include "harness/device_random.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_check.hpp"

namespace moba {
namespace {

__device__ inline std::uint64_t mix64(std::uint64_t z) {  // splitmix64 finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Box-Muller on two uniforms hashed from (seed, stream, index).
__device__ inline float normal_value(std::uint64_t seed, std::uint64_t stream, std::int64_t i) {
    const std::uint64_t base = mix64(seed ^ mix64(stream + 0x9E3779B97F4A7C15ull));
    const std::uint64_t a = mix64(base + 2 * static_cast<std::uint64_t>(i));
    const std::uint64_t b = mix64(base + 2 * static_cast<std::uint64_t>(i) + 1);
    const float u1 = (static_cast<float>(a >> 40) + 1.0f) * 0x1.0p-24f;  // (0, 1]
    const float u2 = static_cast<float>(b >> 40) * 0x1.0p-24f;           // [0, 1)
    const float r = sqrtf(-2.0f * logf(u1));
    return r * cospif(2.0f * u2);
}

template <class T>
__device__ inline T from_float(float x);
template <>
__device__ inline float from_float<float>(float x) { return x; }
template <>
__device__ inline __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <class T>
__global__ void fill_normal_kernel(T* dst, std::int64_t n, std::uint64_t seed, std::uint64_t stream) {
    const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
        dst[i] = from_float<T>(normal_value(seed, stream, i));
}

}  // namespace

void fill_normal_device(DType dtype, void* dst, std::int64_t n, std::uint64_t seed, std::uint64_t stream,
                        cudaStream_t cuda_stream) {
    if (n <= 0) return;
    constexpr int kThreads = 256;
    const std::int64_t blocks = std::min<std::int64_t>((n + kThreads - 1) / kThreads, 132 * 64);
    const dim3 grid(static_cast<unsigned>(blocks));
    switch (dtype) {
        case DType::f32:
            fill_normal_kernel<<<grid, kThreads, 0, cuda_stream>>>(static_cast<float*>(dst), n, seed, stream);
            break;
        case DType::f16:
            fill_normal_kernel<<<grid, kThreads, 0, cuda_stream>>>(static_cast<__half*>(dst), n, seed, stream);
            break;
        case DType::bf16:
            fill_normal_kernel<<<grid, kThreads, 0, cuda_stream>>>(static_cast<__nv_bfloat16*>(dst), n, seed, stream);
            break;
    }
    MOBA_CHECK_LAUNCH();
}

}  // namespace moba
