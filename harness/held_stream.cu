#include "harness/held_stream.hpp"

#include <cstdint>

#include "core/cuda_check.hpp"

namespace moba {
namespace {

__device__ std::uint64_t global_nanoseconds() {
    std::uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__global__ void spin_kernel(std::uint64_t nanoseconds) {
    const std::uint64_t start = global_nanoseconds();
    while (global_nanoseconds() - start < nanoseconds) __nanosleep(1000);
}

}  // namespace

HeldStream::HeldStream() { MOBA_CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }

HeldStream::~HeldStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void HeldStream::hold(double milliseconds) {
    spin_kernel<<<1, 1, 0, stream_>>>(static_cast<std::uint64_t>(milliseconds * 1e6));
    MOBA_CHECK_LAUNCH();
}

void HeldStream::finish() {
    // The whole device, this stream included: work an implementation queued elsewhere must be
    // finished before its outputs are read.
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
}

HeldStream& held_stream() {
    // Never destroyed: a static's destructor would run after the CUDA runtime's own teardown.
    static HeldStream* const stream = new HeldStream;
    return *stream;
}

}  // namespace moba
