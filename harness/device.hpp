// The GPU as the harness sees it: whether one is present, what it is, RAII device memory,
// and the refusal of configurations larger than free device memory before allocating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moba {

struct DeviceInfo {
    bool present = false;
    std::string reason;  // why no GPU is used, when !present
    std::string name;
    int ordinal = 0;
    int sms = 0;
    int cc_major = 0, cc_minor = 0;
    std::size_t memory_bytes = 0;
    int sm_clock_mhz = 0;       // max clock the driver reports
    int memory_clock_mhz = 0;
    int driver_version = 0;     // e.g. 13000
    int runtime_version = 0;
};

// Queries device 0 once; never throws (a missing driver or GPU gives present = false).
const DeviceInfo& device_info();

// Free and total device memory right now.
struct MemoryInfo {
    std::size_t free_bytes = 0;
    std::size_t total_bytes = 0;
};
MemoryInfo device_memory();

// Thrown when a configuration needs more device memory than is free: names both sizes.
struct OutOfDeviceMemory : std::exception {
    std::string message;
    explicit OutOfDeviceMemory(std::string m) : message(std::move(m)) {}
    const char* what() const noexcept override { return message.c_str(); }
};

// Throws OutOfDeviceMemory when `bytes` (+ a safety margin) exceed free device memory.
// `what` describes the allocation for the message.
void require_device_memory(std::size_t bytes, const std::string& what);

// Owner of one cudaMalloc allocation. Copy deleted, move transfers ownership.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

    void* get() const { return ptr_; }
    template <class T>
    T* as() const { return static_cast<T*>(ptr_); }
    std::size_t bytes() const { return bytes_; }

    void upload(const void* host, std::size_t bytes);
    void download(void* host, std::size_t bytes) const;
    // Fill with 0xFF bytes: NaN in fp32, fp16 and bf16, -1 in int32. Unwritten outputs then
    // fail the NaN check (or read as an invalid block index).
    void poison();

private:
    void* ptr_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace moba
