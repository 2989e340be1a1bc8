// Runs one registered implementation on the GPU for one problem: uploads inputs in the
// problem's dtype, poisons every output (NaN) before each launch, synchronises, checks for
// errors and copies the results back as float.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "harness/device.hpp"
#include "harness/guarded_buffer.hpp"
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
    // One line per input whose device bytes differ from what was uploaded (input_change), each
    // prefixed with `when` ("gating", "forward", ...).
    std::vector<std::string> changed(const std::string& when) const;

private:
    Problem problem_;
    ByteDigest uploaded_cu_, uploaded_q_, uploaded_k_, uploaded_v_, uploaded_dout_;  // what was uploaded
};

// The selection the implementation's gating wrote, its workspace poisoned first (SEMANTICS.md
// §5; not in --sanitize's child run). With `stray_writes`, also what it wrote outside its output
// and workspace (their guard bands, read after each call) and any input it changed, one line each.
// With `again`, the gating runs a second time on the same workspace (the selection re-poisoned)
// and that selection goes to *again: a gating whose second call differs depends on what its
// first call left, or is not deterministic. A gating that changed q or k is not called again
// (*again is its first selection): the change is reported, and a second call would read other
// inputs than the checked ones.
Selection run_gating(const Implementation& impl, const DeviceInputs& inputs,
                     std::vector<std::string>* stray_writes = nullptr, Selection* again = nullptr);

// Forward arguments over device buffers (backward pointers null, default stream).
AttentionArgs forward_args(const Problem& problem, const DeviceBuffer& cu_seqlens, const DeviceBuffer& q,
                           const DeviceBuffer& k, const DeviceBuffer& v, const std::int32_t* sel,
                           const DeviceBuffer& out, const DeviceBuffer& lse, const DeviceBuffer& workspace);

struct AttentionRun {
    ForwardOutput forward;
    GradientOutput gradients;  // empty when backward was not run
    // Writes outside the outputs (guard bands around out, lse, dq, dk, dv and the workspace,
    // read after every call, the second calls too) and changed inputs (q, k, v, dout,
    // cu_seqlens, the selection), one line each, prefixed with the phase ("the second forward").
    // The workspace is poisoned before the first forward and the first backward (not in
    // --sanitize's child run).
    std::vector<std::string> stray_writes;
    // With call_twice: a second forward and backward after the first pair, on the same
    // workspace with the outputs re-poisoned, as a training loop calls them step after step;
    // not run once a phase changed an input (reported in stray_writes). With several kv heads
    // the second calls run one kv head per head pass (second_calls_one_kv_head_per_pass).
    std::optional<ForwardOutput> forward_again;
    std::optional<GradientOutput> gradients_again;
};
// Whether run_attention's second calls run with MOBA_ACCUMULATOR_BUDGET_MIB=0, so that the MoBA
// kernels take one kv head per head pass (kernels/moba/head_passes.hpp): where there are several
// kv heads. The first calls take the budget as the environment sets it (4 GiB by default: one pass
// at every size a check reaches), so without this no check would run a later pass's head offsets.
// Entries that do not read the variable run as on the first call. SEMANTICS.md §5.
bool second_calls_one_kv_head_per_pass(const Problem& problem);

// Forward (and backward when `with_backward`) with the given selection fed to the kernel.
AttentionRun run_attention(const Implementation& impl, const DeviceInputs& inputs,
                           const Selection& selection, bool with_backward, bool call_twice = false);

// Host conversion between float values and the dtype's storage (CUDA's own conversions).
std::vector<unsigned char> encode(DType dtype, std::span<const float> values);
std::vector<float> decode(DType dtype, std::span<const unsigned char> bytes);

}  // namespace moba
