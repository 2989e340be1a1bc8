// An output buffer between two guard bands, and the check that an implementation wrote only what
// it owns (SEMANTICS.md §5: writes stay inside the outputs, inputs are left as they were).
// Without the guards a write past the end of `out` (a tile padded past the last token, a row
// index off by one) lands in the allocation's rounding and no tolerance sees it; only
// compute-sanitizer would, and `moba check` does not run under it by default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "harness/device.hpp"

namespace moba {

// Guard sizes: the head keeps the body 4096-byte aligned (cudaMalloc gives 256; TMA wants 16),
// the tail covers a whole padded tile of any output (128 rows x 128 values x 4 bytes).
inline constexpr std::size_t kGuardHeadBytes = 4096;
inline constexpr std::size_t kGuardTailBytes = std::size_t{64} << 10;
inline constexpr unsigned char kGuardByte = 0x5A;

// Guards are off when MOBA_NO_GUARDS=1: `moba check --sanitize` sets it for its child run, so
// compute-sanitizer sees the outputs at their exact size and reports every access past them,
// reads included (a read of a guard is silent to both checks). Run compute-sanitizer by hand
// with it set too.
bool guard_bands_enabled();

class GuardedBuffer {
public:
    GuardedBuffer() = default;
    // Guards filled with kGuardByte; the body poisoned (an output, or a workspace, whose contents
    // at a call's start, or at decode_prepare's, an implementation must not depend on:
    // SEMANTICS.md §5) or left as allocated (any workspace in --sanitize's child run, so that
    // initcheck sees reads of bytes no call wrote).
    enum class Body { poisoned, as_allocated };
    explicit GuardedBuffer(std::size_t bytes, Body body = Body::poisoned);
    void* get() const { return body_; }
    template <class T>
    T* as() const { return static_cast<T*>(body_); }
    std::size_t bytes() const { return bytes_; }
    void upload(const void* host, std::size_t bytes);
    void download(void* host, std::size_t bytes) const;
    void poison();        // the body only (0xFF: NaN, -1)
    void poison(cudaStream_t stream);  // the same, queued on `stream`
    void rearm_guards();  // both guards back to kGuardByte, so a later phase's damage is its own
    // "" when both guards still hold kGuardByte everywhere, else what was written where (guard_damage).
    std::string damage(const std::string& name) const;

private:
    DeviceBuffer storage_;
    void* body_ = nullptr;
    std::size_t bytes_ = 0;
    std::size_t head_ = 0, tail_ = 0;  // the guards' sizes: kGuard*Bytes, or 0 with guards off
};

// What the guards' bytes say, host-side: "" when all are kGuardByte, else "N bytes written
// before the start of NAME (nearest at -X)" and/or "N bytes written past the end of NAME
// (first at +Y of the Z-byte guard)".
std::string guard_damage(std::span<const unsigned char> head, std::span<const unsigned char> tail,
                         const std::string& name);

// "" when `now` equals `before`, else "NAME changed: N of M bytes differ (first at byte X)".
std::string input_change(std::span<const unsigned char> before, std::span<const unsigned char> now,
                         const std::string& name);

// What an input held, kept as one 64-bit hash per 4 KiB chunk rather than a copy: the inputs of
// a 1M-token check are tens of GiB, and their host copies would double the host memory the
// check needs. A change is located to its chunk.
struct ByteDigest {
    static constexpr std::size_t kChunk = 4096;
    std::size_t bytes = 0;
    std::vector<std::uint64_t> chunks;
};
ByteDigest digest(std::span<const unsigned char> bytes);  // on every core
// "" when `now` hashes to `before` chunk by chunk, else "NAME changed: N of M 4 KiB chunks differ
// (the first at bytes [X, Y))".
std::string input_change(const ByteDigest& before, std::span<const unsigned char> now, const std::string& name);

}  // namespace moba
