// Google Benchmark suite: every registered implementation on a fixed set of configurations,
// timed with the timing core's CUDA event pair (manual time, harness/timer.hpp) and reported
// with TFLOP/s and SM clock counters (sm_clock_start_mhz, sm_clock_end_mhz, throttled, as
// `moba bench` records them), so its JSON output works with Google Benchmark's own
// tools/compare.py. Correctness is moba check's job and the forward check of moba bench; here
// each implementation still runs its forward once and the benchmark errors out if the output
// holds NaN or Inf.
//   build/release/suites/bench_moba --benchmark_out=gbench.json --benchmark_out_format=json
// Exit status: 0 every benchmark ran; 1 some benchmark errored (SkipWithError: NaN/Inf, an
// exception) other than an implementation that does not support the configuration; 77 no GPU
// (nothing is run; --benchmark_list_tests still lists); 2 unrecognized flags. The console
// output is always Google Benchmark's console table: use --benchmark_out for JSON.
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "harness/device.hpp"
#include "harness/flops.hpp"
#include "harness/gpu_run.hpp"
#include "harness/inputs.hpp"
#include "harness/registry.hpp"
#include "harness/timer.hpp"

namespace moba {
namespace {

std::vector<Problem> configurations() {
    std::vector<Problem> list;
    for (int len : {8192, 32768})
        for (int hkv : {16, 4, 1}) {
            Problem p;
            p.seqlens = {len};
            p.heads_q = 16;
            p.heads_kv = hkv;
            p.head_dim = 128;
            p.block = 512;
            p.topk = 8;
            p.dtype = DType::bf16;
            list.push_back(p);
        }
    return list;
}

constexpr std::string_view kNotSupported = "not supported: ";

void run_forward(benchmark::State& state, const Implementation& impl, const Problem& p) {
    if (!device_info().present) {
        state.SkipWithError(("no GPU: " + device_info().reason).c_str());
        return;
    }
    const Support s = impl.supports(p);
    if (!s.ok) {
        state.SkipWithError((std::string(kNotSupported) + s.reason).c_str());
        return;
    }
    try {
        const HostInputs in = make_inputs(p, 1);
        DeviceInputs din(impl, p, in);
        const Implementation* gate = impl.has_gating() ? &impl : find_implementation("naive");
        const Selection sel = run_gating(*gate, din);
        DeviceBuffer d_sel(sel.blocks.size() * 4), out(static_cast<std::size_t>(p.q_elems()) * dtype_bytes(p.dtype)),
            lse(static_cast<std::size_t>(p.lse_elems()) * 4),
            ws(impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0);
        d_sel.upload(sel.blocks.data(), d_sel.bytes());
        const AttentionArgs a = forward_args(p, din.cu_seqlens, din.q, din.k, din.v, d_sel.as<std::int32_t>(), out, lse, ws);
        out.poison();
        impl.forward(a);  // warm-up and a NaN/Inf screen of the output
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
        std::vector<float> lse_host(static_cast<std::size_t>(p.lse_elems()));
        lse.download(lse_host.data(), lse.bytes());
        for (float x : lse_host)
            if (!std::isfinite(x)) {
                state.SkipWithError("the forward wrote NaN/Inf");
                return;
            }
        // The timing core's event pair around each iteration; the iteration count is Google
        // Benchmark's. The clock window spans the loop, as measure()'s spans its samples.
        SampleTimer timer;
        const ClockWatch clock;
        const TimedBody body = [&](cudaStream_t stream) {
            AttentionArgs run = a;
            run.stream = stream;
            impl.forward(run);
        };
        for (auto _ : state) state.SetIterationTime(timer.time_ms(body, a.stream) * 1e-3);
        const ClockWindow window = clock.finish();
        state.counters["sm_clock_start_mhz"] = window.start_mhz;
        state.counters["sm_clock_end_mhz"] = window.end_mhz;
        state.counters["throttled"] = window.throttled() ? 1 : 0;
        const double flops = attention_flops(p, impl.dense ? dense_pairs(p) : moba_pairs(p), Phase::fwd);
        state.counters["TFLOP/s"] =
            benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
    }
}

// The message of a run that ended with SkipWithError, or null. Google Benchmark 1.7 (Debian
// bookworm, CI) names it error_occurred / error_message; 1.8 (the GPU machine) skipped /
// skip_message.
template <class Run>
const std::string* error_of(const Run& r) {
    if constexpr (requires { r.error_occurred; })
        return r.error_occurred ? &r.error_message : nullptr;
    else
        return r.skipped == decltype(r.skipped)::SkippedWithError ? &r.skip_message : nullptr;
}

// The console table, counting the runs that errored for a reason other than "not supported".
class ErrorCountingReporter : public benchmark::ConsoleReporter {
public:
    using ConsoleReporter::ConsoleReporter;
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs)
            if (const std::string* message = error_of(r); message && message->rfind(kNotSupported, 0) != 0)
                ++errors;
        ConsoleReporter::ReportRuns(runs);
    }
    int errors = 0;
};

bool listing_only(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--benchmark_list_tests" || a == "--benchmark_list_tests=true" ||
            a == "--benchmark_list_tests=1")
            return true;
    }
    return false;
}

}  // namespace
}  // namespace moba

int main(int argc, char** argv) {
    for (const auto& impl : moba::registry())
        for (const auto& p : moba::configurations()) {
            const std::string name = fmt::format("fwd/{}/{}/L{}/Hq{}/Hkv{}/D{}/Bs{}/k{}", impl.name,
                                                 moba::head_layout(p.heads_q, p.heads_kv), p.seqlens[0], p.heads_q,
                                                 p.heads_kv, p.head_dim, p.block, p.topk);
            benchmark::RegisterBenchmark(name.c_str(), [&impl, p](benchmark::State& s) { moba::run_forward(s, impl, p); })
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
        }
    const bool list = moba::listing_only(argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    if (list) {
        benchmark::RunSpecifiedBenchmarks();
        benchmark::Shutdown();
        return 0;
    }
    if (!moba::device_info().present) {
        std::fprintf(stderr, "bench_moba: no GPU (%s): nothing was run; exit status 77\n",
                     moba::device_info().reason.c_str());
        benchmark::Shutdown();
        return 77;
    }
    moba::ErrorCountingReporter display(::isatty(STDOUT_FILENO)
                                            ? benchmark::ConsoleReporter::OO_Color
                                            : benchmark::ConsoleReporter::OO_None);
    benchmark::RunSpecifiedBenchmarks(&display);
    benchmark::Shutdown();
    if (display.errors > 0) {
        std::fprintf(stderr, "bench_moba: %d benchmark(s) errored (see error_message above)\n",
                     display.errors);
        return 1;
    }
    return 0;
}
