#include "harness/device.hpp"

#include <utility>

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include "core/cuda_check.hpp"

namespace moba {
namespace {

DeviceInfo query_device() {
    DeviceInfo info;
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        info.reason = fmt::format("{}: {}", cudaGetErrorName(status),
                                  cudaGetErrorString(status));
        return info;
    }
    if (count == 0) {
        info.reason = "the CUDA runtime reports 0 devices";
        return info;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        info.reason = "cudaGetDeviceProperties failed on device 0";
        return info;
    }
    info.present = true;
    info.name = prop.name;
    info.sms = prop.multiProcessorCount;
    info.cc_major = prop.major;
    info.cc_minor = prop.minor;
    info.memory_bytes = prop.totalGlobalMem;
    int clock_khz = 0, mem_khz = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0) == cudaSuccess)
        info.sm_clock_mhz = clock_khz / 1000;
    if (cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess)
        info.memory_clock_mhz = mem_khz / 1000;
    (void)cudaGetLastError();
    cudaDriverGetVersion(&info.driver_version);
    cudaRuntimeGetVersion(&info.runtime_version);
    return info;
}

}  // namespace

const DeviceInfo& device_info() {
    static const DeviceInfo info = query_device();
    return info;
}

MemoryInfo device_memory() {
    MemoryInfo m;
    MOBA_CUDA_CALL(cudaMemGetInfo(&m.free_bytes, &m.total_bytes));
    return m;
}

void require_device_memory(std::size_t bytes, const std::string& what) {
    // Keep a margin for the CUDA context's own allocations and fragmentation.
    constexpr std::size_t kMargin = std::size_t{256} << 20;
    const MemoryInfo m = device_memory();
    if (bytes + kMargin > m.free_bytes) {
        throw OutOfDeviceMemory(fmt::format(
            "{} needs {:.2f} GiB of device memory but only {:.2f} GiB of {:.2f} GiB are free "
            "(a {:.2f} GiB margin is kept)",
            what, static_cast<double>(bytes) / (1u << 30),
            static_cast<double>(m.free_bytes) / (1u << 30),
            static_cast<double>(m.total_bytes) / (1u << 30),
            static_cast<double>(kMargin) / (1u << 30)));
    }
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    if (bytes > 0) MOBA_CUDA_CALL(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
        if (ptr_) cudaFree(ptr_);
        ptr_ = std::exchange(other.ptr_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
    if (bytes > bytes_) throw std::logic_error("DeviceBuffer::upload larger than the buffer");
    if (bytes > 0) MOBA_CUDA_CALL(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
    if (bytes > bytes_) throw std::logic_error("DeviceBuffer::download larger than the buffer");
    if (bytes > 0) MOBA_CUDA_CALL(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost));
}

void DeviceBuffer::poison() {
    if (bytes_ > 0) MOBA_CUDA_CALL(cudaMemset(ptr_, 0xFF, bytes_));
}

}  // namespace moba
