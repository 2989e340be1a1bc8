// A non-blocking stream whose next work is held back behind a spinning kernel: the second calls
// of `moba check` run on it, so an implementation that launches on another stream than
// args.stream (the legacy default stream, a stream of its own) is caught. Its kernels start at
// once, beside the held kernel, and finish before the poisoning queued on this stream lands on
// their outputs; a stream-ordered implementation writes after the poisoning and is unaffected.
// PyTorch's side streams are non-blocking too, so this is the case a user's training loop meets.
#pragma once

#include <cuda_runtime_api.h>

namespace moba {

class HeldStream {
public:
    HeldStream();  // cudaStreamNonBlocking; throws moba::CudaError
    ~HeldStream();
    HeldStream(const HeldStream&) = delete;
    HeldStream& operator=(const HeldStream&) = delete;
    cudaStream_t get() const { return stream_; }
    // Queues one thread that spins for `milliseconds` of GPU time (the global timer): what is
    // queued after it on this stream starts no earlier.
    void hold(double milliseconds);
    // Waits for the whole device, this stream included (work an implementation queued
    // elsewhere must be finished before its outputs are read).
    void finish();

private:
    cudaStream_t stream_ = nullptr;
};

// The process's held stream, created on first use and kept: PyTorch's caching allocator keeps
// what a callable allocated on a stream for that stream alone, so a stream per call would
// strand those blocks (the Python bridge runs callables on args.stream).
HeldStream& held_stream();

// How long the second calls' stream is held: longer than the checked problems' kernels take on
// an idle GPU, short beside a check's float64 work.
inline constexpr double kSecondCallHoldMs = 5.0;

}  // namespace moba
