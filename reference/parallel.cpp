#include "reference/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moba::ref {

int worker_count() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

namespace detail {

void run_ranges(std::int64_t n, RangeBody run, void* body) {
    if (n <= 0) return;
    const std::int64_t workers = std::min<std::int64_t>(worker_count(), n);
    // About 16 ranges per worker: enough for balance when rows cost very different amounts
    // (causal rows grow with their position), few enough to keep the counter cold.
    const std::int64_t grain = std::max<std::int64_t>(1, n / (workers * 16));
    if (workers == 1 || grain >= n) {
        run(body, 0, n);
        return;
    }
    std::atomic<std::int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&] {
        for (;;) {
            const std::int64_t begin = next.fetch_add(grain);
            if (begin >= n) return;
            try {
                run(body, begin, std::min(n, begin + grain));
            } catch (...) {
                const std::lock_guard lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(n);  // stop handing out ranges
                return;
            }
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(workers - 1));
    for (std::int64_t t = 1; t < workers; ++t) threads.emplace_back(worker);
    worker();
    for (std::thread& thread : threads) thread.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace detail

}  // namespace moba::ref
