// Timing like nvbench: warm-up, then CUDA events around each sample, until the relative
// spread is below a bound (with a minimum sample count) or a sample/time limit is reached.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <nlohmann/json.hpp>

namespace moba {

struct TimingOptions {
    int warmup = 2;               // untimed runs first (1 when one run exceeds warmup_long_ms)
    double warmup_long_ms = 2000;
    int min_samples = 5;
    int max_samples = 100;
    double target_rel_stddev = 0.02;
    double max_seconds = 10.0;    // wall budget for the samples of one state
};

struct Timing {
    std::vector<double> samples_ms;
    double median_ms = 0, min_ms = 0, max_ms = 0, mean_ms = 0, rel_stddev = 0;
    int warmup = 0;
    std::string stop;  // converged, max_samples, max_time
};

// Times `body` (which enqueues work on `stream`). Throws moba::CudaError on CUDA failures.
Timing measure(const std::function<void(cudaStream_t)>& body, cudaStream_t stream,
               const TimingOptions& options);

// Summary statistics of samples (median, min, max, mean, relative standard deviation).
Timing summarize(std::vector<double> samples_ms);

nlohmann::json timing_json(const Timing& t);

}  // namespace moba
