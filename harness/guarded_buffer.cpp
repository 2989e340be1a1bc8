#include "harness/guarded_buffer.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "reference/parallel.hpp"

namespace moba {

bool guard_bands_enabled() {
    static const bool enabled = [] {
        const char* off = std::getenv("MOBA_NO_GUARDS");
        return off == nullptr || std::string(off) != "1";
    }();
    return enabled;
}

GuardedBuffer::GuardedBuffer(std::size_t bytes, Body body)
    : bytes_(bytes),
      head_(guard_bands_enabled() ? kGuardHeadBytes : 0),
      tail_(guard_bands_enabled() ? kGuardTailBytes : 0) {
    storage_ = DeviceBuffer(head_ + bytes + tail_);
    auto* base = static_cast<unsigned char*>(storage_.get());
    body_ = base + head_;
    rearm_guards();
    if (body == Body::poisoned) poison();
}

void GuardedBuffer::upload(const void* host, std::size_t bytes) {
    if (bytes > bytes_) throw std::logic_error("GuardedBuffer::upload larger than the buffer");
    if (bytes > 0) MOBA_CUDA_CALL(cudaMemcpy(body_, host, bytes, cudaMemcpyHostToDevice));
}

void GuardedBuffer::download(void* host, std::size_t bytes) const {
    if (bytes > bytes_) throw std::logic_error("GuardedBuffer::download larger than the buffer");
    if (bytes > 0) MOBA_CUDA_CALL(cudaMemcpy(host, body_, bytes, cudaMemcpyDeviceToHost));
}

void GuardedBuffer::poison() {
    if (bytes_ > 0) MOBA_CUDA_CALL(cudaMemset(body_, 0xFF, bytes_));
}

void GuardedBuffer::poison(cudaStream_t stream) {
    if (bytes_ > 0) MOBA_CUDA_CALL(cudaMemsetAsync(body_, 0xFF, bytes_, stream));
}

void GuardedBuffer::rearm_guards() {
    if (head_ + tail_ == 0) return;
    auto* base = static_cast<unsigned char*>(storage_.get());
    MOBA_CUDA_CALL(cudaMemset(base, kGuardByte, head_));
    MOBA_CUDA_CALL(cudaMemset(base + head_ + bytes_, kGuardByte, tail_));
}

std::string GuardedBuffer::damage(const std::string& name) const {
    if (head_ + tail_ == 0) return "";
    std::vector<unsigned char> head(head_), tail(tail_);
    const auto* base = static_cast<const unsigned char*>(storage_.get());
    MOBA_CUDA_CALL(cudaMemcpy(head.data(), base, head.size(), cudaMemcpyDeviceToHost));
    MOBA_CUDA_CALL(cudaMemcpy(tail.data(), base + head_ + bytes_, tail.size(), cudaMemcpyDeviceToHost));
    return guard_damage(head, tail, name);
}

std::string guard_damage(std::span<const unsigned char> head, std::span<const unsigned char> tail,
                         const std::string& name) {
    std::size_t before = 0, nearest = 0;  // nearest: distance before the start of the closest write
    for (std::size_t i = 0; i < head.size(); ++i)
        if (head[i] != kGuardByte) {
            ++before;
            nearest = head.size() - i;
        }
    std::size_t past = 0, first = tail.size();
    for (std::size_t i = 0; i < tail.size(); ++i)
        if (tail[i] != kGuardByte) {
            ++past;
            if (first == tail.size()) first = i;
        }
    std::string out;
    if (before > 0)
        out = fmt::format("{} bytes written before the start of {} (nearest at byte -{})", before, name, nearest);
    if (past > 0)
        out += fmt::format("{}{} bytes written past the end of {} (first at byte +{} of the {}-byte guard)",
                           out.empty() ? "" : "; ", past, name, first, tail.size());
    return out;
}

std::string input_change(std::span<const unsigned char> before, std::span<const unsigned char> now,
                         const std::string& name) {
    if (before.size() != now.size())
        return fmt::format("{} changed size: {} bytes, then {}", name, before.size(), now.size());
    // The common case first, at memcmp's speed: a long suite's q is 256 MiB.
    if (before.empty() || std::memcmp(before.data(), now.data(), before.size()) == 0) return "";
    std::size_t differ = 0, first = 0;
    for (std::size_t i = 0; i < before.size(); ++i)
        if (before[i] != now[i] && differ++ == 0) first = i;
    if (differ == 0) return "";
    return fmt::format("{} changed: {} of {} bytes differ (first at byte {}); an input is read, never written",
                       name, differ, before.size(), first);
}

namespace {

// FNV-1a's multiply over 8-byte words (the tail bytewise), seeded with the chunk's length: a
// checksum against accidental writes, not an adversary.
std::uint64_t chunk_hash(const unsigned char* p, std::size_t n) {
    std::uint64_t h = 0xcbf29ce484222325ull ^ n;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

std::vector<std::uint64_t> chunk_hashes(std::span<const unsigned char> bytes) {
    const auto chunks = static_cast<std::int64_t>((bytes.size() + ByteDigest::kChunk - 1) / ByteDigest::kChunk);
    std::vector<std::uint64_t> out(static_cast<std::size_t>(chunks));
    ref::parallel_for_ranges(chunks, [&](std::int64_t begin, std::int64_t end) {
        for (auto c = static_cast<std::size_t>(begin); c < static_cast<std::size_t>(end); ++c) {
            const std::size_t at = c * ByteDigest::kChunk;
            out[c] = chunk_hash(bytes.data() + at, std::min(ByteDigest::kChunk, bytes.size() - at));
        }
    });
    return out;
}

}  // namespace

ByteDigest digest(std::span<const unsigned char> bytes) { return {bytes.size(), chunk_hashes(bytes)}; }

std::string input_change(const ByteDigest& before, std::span<const unsigned char> now, const std::string& name) {
    if (before.bytes != now.size())
        return fmt::format("{} changed size: {} bytes, then {}", name, before.bytes, now.size());
    const std::vector<std::uint64_t> after = chunk_hashes(now);
    std::size_t differ = 0, first = 0;
    for (std::size_t c = 0; c < after.size(); ++c)
        if (after[c] != before.chunks[c] && differ++ == 0) first = c;
    if (differ == 0) return "";
    const std::size_t from = first * ByteDigest::kChunk;
    return fmt::format("{} changed: {} of {} 4 KiB chunks differ (the first at bytes [{}, {})); an input is read, "
                       "never written",
                       name, differ, after.size(), from, std::min(from + ByteDigest::kChunk, now.size()));
}

}  // namespace moba
