#include "harness/guarded_buffer.hpp"

#include <vector>

#include <fmt/format.h>

#include "core/cuda_check.hpp"

namespace moba {

GuardedBuffer::GuardedBuffer(std::size_t bytes)
    : storage_(kGuardHeadBytes + bytes + kGuardTailBytes), bytes_(bytes) {
    auto* base = static_cast<unsigned char*>(storage_.get());
    body_ = base + kGuardHeadBytes;
    MOBA_CUDA_CALL(cudaMemset(base, kGuardByte, storage_.bytes()));
    poison();
}

void GuardedBuffer::download(void* host, std::size_t bytes) const {
    MOBA_CUDA_CALL(cudaMemcpy(host, body_, bytes, cudaMemcpyDeviceToHost));
}

void GuardedBuffer::poison() {
    if (bytes_ > 0) MOBA_CUDA_CALL(cudaMemset(body_, 0xFF, bytes_));
}

void GuardedBuffer::rearm_guards() {
    auto* base = static_cast<unsigned char*>(storage_.get());
    MOBA_CUDA_CALL(cudaMemset(base, kGuardByte, kGuardHeadBytes));
    MOBA_CUDA_CALL(cudaMemset(base + kGuardHeadBytes + bytes_, kGuardByte, kGuardTailBytes));
}

std::string GuardedBuffer::damage(const std::string& name) const {
    std::vector<unsigned char> head(kGuardHeadBytes), tail(kGuardTailBytes);
    const auto* base = static_cast<const unsigned char*>(storage_.get());
    MOBA_CUDA_CALL(cudaMemcpy(head.data(), base, head.size(), cudaMemcpyDeviceToHost));
    MOBA_CUDA_CALL(cudaMemcpy(tail.data(), base + kGuardHeadBytes + bytes_, tail.size(), cudaMemcpyDeviceToHost));
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
    std::size_t differ = 0, first = 0;
    for (std::size_t i = 0; i < before.size(); ++i)
        if (before[i] != now[i] && differ++ == 0) first = i;
    if (differ == 0) return "";
    return fmt::format("{} changed: {} of {} bytes differ (first at byte {}); an input is read, never written",
                       name, differ, before.size(), first);
}

}  // namespace moba
