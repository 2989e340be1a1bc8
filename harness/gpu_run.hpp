// Runs one registered implementation on the GPU for one problem: uploads inputs in the
// problem's dtype, poisons every output (NaN) before each launch, synchronises, checks for
// errors and copies the results back as float.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "harness/device.hpp"
#include "harness/registry.hpp"
#include "core/tensors.hpp"

namespace moba {

// Device bytes one gating + forward + backward run of `impl` on `problem` allocates.
std::size_t device_bytes_needed(const Implementation& impl, const Problem& problem);

// The problem's inputs on the device, in its dtype. Refuses (OutOfDeviceMemory) before
// allocating when the whole run would not fit in free device memory.
class DeviceInputs {
public:
    DeviceInputs(const Implementation& impl, const Problem& problem, const HostInputs& inputs);
    const Problem& problem() const { return problem_; }
    DeviceBuffer cu_seqlens, q, k, v, dout;

private:
    Problem problem_;
};

Selection run_gating(const Implementation& impl, const DeviceInputs& inputs);

// Forward arguments over device buffers (backward pointers null, default stream).
AttentionArgs forward_args(const Problem& problem, const DeviceBuffer& cu_seqlens, const DeviceBuffer& q,
                           const DeviceBuffer& k, const DeviceBuffer& v, const std::int32_t* sel,
                           const DeviceBuffer& out, const DeviceBuffer& lse, const DeviceBuffer& workspace);

struct AttentionRun {
    ForwardOutput forward;
    GradientOutput gradients;  // empty when backward was not run
};
// Forward (and backward when `with_backward`) with the given selection fed to the kernel.
AttentionRun run_attention(const Implementation& impl, const DeviceInputs& inputs,
                           const Selection& selection, bool with_backward);

// Host conversion between float values and the dtype's storage (CUDA's own conversions).
std::vector<unsigned char> encode(DType dtype, std::span<const float> values);
std::vector<float> decode(DType dtype, std::span<const unsigned char> bytes);

}  // namespace moba
