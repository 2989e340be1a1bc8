// The timing core: the CUDA event pair, the warm-up and stopping rule of measure(), statistics.
#include "harness/timer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/cuda_check.hpp"

namespace moba {

SampleTimer::SampleTimer() {
    MOBA_CUDA_CALL(cudaEventCreate(&start_));
    try {
        MOBA_CUDA_CALL(cudaEventCreate(&stop_));
    } catch (...) {
        cudaEventDestroy(start_);  // the destructor does not run for a throwing constructor
        throw;
    }
}

SampleTimer::~SampleTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
}

double SampleTimer::time_ms(const TimedBody& body, cudaStream_t stream) {
    MOBA_CUDA_CALL(cudaEventRecord(start_, stream));
    body(stream);
    MOBA_CUDA_CALL(cudaEventRecord(stop_, stream));
    MOBA_CUDA_CALL(cudaEventSynchronize(stop_));
    float ms = 0;
    MOBA_CUDA_CALL(cudaEventElapsedTime(&ms, start_, stop_));
    return ms;
}

Timing summarize(std::vector<double> samples) {
    Timing t;
    t.samples_ms = samples;
    if (samples.empty()) return t;
    std::sort(samples.begin(), samples.end());
    const std::size_t n = samples.size();
    t.median_ms = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    t.min_ms = samples.front();
    t.max_ms = samples.back();
    t.mean_ms = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(n);
    double var = 0;
    for (double s : samples) var += (s - t.mean_ms) * (s - t.mean_ms);
    var = n > 1 ? var / static_cast<double>(n - 1) : 0.0;
    t.rel_stddev = t.mean_ms > 0 ? std::sqrt(var) / t.mean_ms : 0.0;
    return t;
}

namespace {

// Twice the L2 of the current device, overwritten on the stream before a cold sample.
class L2Flush {
public:
    explicit L2Flush(bool enabled) {
        if (!enabled) return;
        int device = 0, l2 = 0;
        MOBA_CUDA_CALL(cudaGetDevice(&device));
        MOBA_CUDA_CALL(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
        bytes_ = 2 * static_cast<std::size_t>(std::max(l2, 1 << 20));
        MOBA_CUDA_CALL(cudaMalloc(&buffer_, bytes_));
    }
    ~L2Flush() {
        if (buffer_) cudaFree(buffer_);
    }
    L2Flush(const L2Flush&) = delete;
    L2Flush& operator=(const L2Flush&) = delete;
    void operator()(cudaStream_t stream) {
        if (buffer_) MOBA_CUDA_CALL(cudaMemsetAsync(buffer_, ++value_ & 0xff, bytes_, stream));
    }

private:
    void* buffer_ = nullptr;
    std::size_t bytes_ = 0;
    int value_ = 0;
};

}  // namespace

bool warmup_done(int runs, bool long_run, double elapsed, const TimingOptions& o) {
    return (runs >= o.warmup || long_run) && elapsed >= o.warmup_seconds;
}

std::string stop_reason(int samples, double rel_stddev, double elapsed, const TimingOptions& o) {
    if (samples >= o.max_samples) return "max_samples";
    if (samples >= o.min_samples && rel_stddev <= o.target_rel_stddev) return "converged";
    if (samples >= o.min_samples && elapsed > o.max_seconds) return "max_time";
    if (elapsed > o.cap_seconds) return "time_cap";
    return {};
}

Timing measure(const TimedBody& body, cudaStream_t stream, const TimingOptions& o) {
    const ClockWatch clock;
    SampleTimer timer;
    L2Flush flush(o.cold);
    auto run_once = [&] {
        flush(stream);
        return timer.time_ms(body, stream);
    };
    int warmup = 0;
    bool long_run = false;  // one long run is warm-up enough, unless seconds are asked
    const auto w0 = std::chrono::steady_clock::now();
    auto warm_seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count(); };
    while (!warmup_done(warmup, long_run, warm_seconds(), o)) {
        if (run_once() > o.warmup_long_ms) long_run = true;
        ++warmup;
    }
    const double warmup_seconds = warm_seconds();
    std::vector<double> samples;
    std::string why;
    const auto t0 = std::chrono::steady_clock::now();
    while (why.empty()) {
        samples.push_back(run_once());
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        why = stop_reason(static_cast<int>(samples.size()), summarize(samples).rel_stddev, elapsed, o);
    }
    Timing t = summarize(samples);
    t.warmup = warmup;
    t.warmup_seconds = warmup_seconds;
    t.stop = why;
    t.min_samples = o.min_samples;
    t.cold = o.cold;
    t.under_sampled = static_cast<int>(samples.size()) < o.min_samples;
    t.clock = clock.finish();
    return t;
}

nlohmann::json timing_json(const Timing& t) {
    return {{"samples", t.samples_ms.size()}, {"median_ms", t.median_ms}, {"min_ms", t.min_ms},
            {"max_ms", t.max_ms},             {"mean_ms", t.mean_ms},     {"rel_stddev", t.rel_stddev},
            {"warmup", t.warmup},             {"warmup_seconds", t.warmup_seconds},
            {"stop", t.stop},
            {"min_samples", t.min_samples},   {"under_sampled", t.under_sampled},
            {"cold", t.cold}};
}

}  // namespace moba
