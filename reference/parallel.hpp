// A tiny parallel loop over std::thread for the float64 reference. Chunks of [0, n) are
// handed out to worker_count() threads in dynamic order, so a body must own disjoint outputs
// per index (then results never depend on thread timing: no shared reduction anywhere).
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>

namespace moba::ref {

// std::thread::hardware_concurrency(), at least 1.
int worker_count();

namespace detail {
using RangeBody = void (*)(void* body, std::int64_t begin, std::int64_t end);
// Calls run(body, begin, end) on disjoint ranges covering [0, n), from worker_count()
// threads (inline when there is one worker or one range). Rethrows the first exception
// thrown by a range once every thread has joined.
void run_ranges(std::int64_t n, RangeBody run, void* body);
}  // namespace detail

// body(begin, end) on disjoint ranges covering [0, n): per-range scratch buffers live here.
template <class F>
void parallel_for_ranges(std::int64_t n, F&& body) {
    using Body = std::remove_reference_t<F>;
    const detail::RangeBody run = [](void* erased, std::int64_t begin, std::int64_t end) {
        (*static_cast<Body*>(erased))(begin, end);
    };
    detail::run_ranges(n, run, const_cast<void*>(static_cast<const void*>(std::addressof(body))));
}

// body(i) for every i in [0, n).
template <class F>
void parallel_for(std::int64_t n, F&& body) {
    parallel_for_ranges(n, [&body](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) body(i);
    });
}

}  // namespace moba::ref
