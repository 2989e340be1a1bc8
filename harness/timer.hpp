// The timing core, like nvbench: warm-up, then CUDA events around each sample, until the
// relative spread is below a bound (with a minimum sample count) or a sample/time limit is
// reached, with the SM clock read around it all. Every CUDA-event timing of the project goes
// through SampleTimer: `measure` here, and Google Benchmark's manual-time loop in
// suites/bench_moba.cpp, which lets the library choose the iteration count.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <nlohmann/json.hpp>

#include "harness/gpu_clock.hpp"

namespace moba {

// Work to time: enqueues itself on the given stream.
using TimedBody = std::function<void(cudaStream_t)>;

// A start/stop CUDA event pair, made once and reused by every sample of a loop.
class SampleTimer {
public:
    SampleTimer();
    ~SampleTimer();
    SampleTimer(const SampleTimer&) = delete;
    SampleTimer& operator=(const SampleTimer&) = delete;

    // Milliseconds of device time between events recorded on `stream` before and after `body`
    // enqueues its work; waits for the stop event. Throws moba::CudaError on CUDA failures.
    double time_ms(const TimedBody& body, cudaStream_t stream);

private:
    cudaEvent_t start_{}, stop_{};
};

struct TimingOptions {
    int warmup = 2;               // untimed runs first (1 when one run exceeds warmup_long_ms)
    double warmup_long_ms = 2000;
    // And untimed runs until this many seconds have passed (--warmup-seconds): the samples then
    // come from the clock and power state of sustained load, not from a cool GPU's boost clock.
    // Same-process ratios need it: an H200 under tensor-core load falls from 1980 to ~1600 MHz
    // within seconds, so without it a state that converges in 5 samples is timed at the boost
    // clock and one that needs 100 at the throttled one (kernels/NOTES.md, 77f226f's 32K run).
    double warmup_seconds = 0;
    int min_samples = 5;
    int max_samples = 100;
    double target_rel_stddev = 0.02;
    double max_seconds = 10.0;    // wall budget for the samples of one state, once min_samples are in
    // Hard cap for one state: the only thing that ends sampling before min_samples (the record
    // then says under_sampled). 1M-token dense baselines take ~19 s a run.
    double cap_seconds = 300.0;
    // Cold samples: before each sample (outside its events) a buffer of twice the device's L2 is
    // overwritten, so the timed work starts from DRAM, as a layer of a real model does.
    bool cold = false;
};

// Whether the warm-up is over after `runs` untimed runs taking `elapsed` seconds, `long_run` when
// one of them exceeded warmup_long_ms: the runs asked (one long run is enough) and the seconds
// asked. Pure, like stop_reason.
bool warmup_done(int runs, bool long_run, double elapsed, const TimingOptions& options);

// Why sampling stops after `samples` samples, `elapsed` seconds and a relative spread of
// `rel_stddev`: "converged", "max_samples", "max_time" (max_seconds, after min_samples),
// "time_cap" (cap_seconds, possibly before min_samples); empty to go on. Pure, so the rule is
// tested without a GPU.
std::string stop_reason(int samples, double rel_stddev, double elapsed, const TimingOptions& options);

struct Timing {
    std::vector<double> samples_ms;
    double median_ms = 0, min_ms = 0, max_ms = 0, mean_ms = 0, rel_stddev = 0;
    int warmup = 0;
    double warmup_seconds = 0;   // how long the warm-up took
    std::string stop;    // converged, max_samples, max_time, time_cap
    int min_samples = 1;         // what was asked
    bool cold = false;           // L2 flushed before each sample
    bool under_sampled = false;  // fewer samples than asked (only the time cap does this)
    ClockWindow clock;   // SM clock from before the warm-up to after the last sample
};

// Times `body` on `stream`. Throws moba::CudaError on CUDA failures.
Timing measure(const TimedBody& body, cudaStream_t stream, const TimingOptions& options);

// Summary statistics of samples (median, min, max, mean, relative standard deviation).
Timing summarize(std::vector<double> samples_ms);

// The report's "timing" object (the clock is written beside it, by the bench record).
nlohmann::json timing_json(const Timing& t);

}  // namespace moba
