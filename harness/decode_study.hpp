// One point of the decode IO study (`moba decode-study`, SEMANTICS.md §9.1): a batch of
// requests with equal cache lengths and q_len new tokens each, inputs of one family (q at the
// new tokens and the caches' k only: gating needs nothing else), the float64 gating of the new
// tokens, and its IO accounting (decode_io.hpp); with a GPU, the MoBA step and the dense decodes
// of the same caches timed (DecodeTimingOptions), else the record says why there is no time.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "harness/check.hpp"
#include "harness/compare.hpp"
#include "harness/decode_io.hpp"
#include "harness/input_families.hpp"
#include "harness/registry.hpp"
#include "harness/timer.hpp"
#include "reference/decode.hpp"

namespace moba {

struct DecodeStudyPoint {
    int heads_q = 32, heads_kv = 32;
    int cache_len = 0;  // tokens in each request's cache, its new ones included
    int batch = 1;      // requests
    int block = 512, topk = 3, head_dim = 128;
    int q_len = 1;  // new tokens per request
    DType dtype = DType::bf16;
    InputFamily inputs = InputFamily::normal;
    std::uint64_t seed = 1;
};

// The decode batch of the point; throws std::invalid_argument naming a bad value (as
// DecodeBatch::validate and Problem::validate do).
ref::DecodeBatch decode_study_batch(const DecodeStudyPoint& point);
// Host memory the point holds at its peak: k of every cache (float), q of the new tokens, the
// block means (double kbar and mean |k|) that the gating and the vote scorer each keep.
std::int64_t decode_study_host_bytes(const DecodeStudyPoint& point);

// "moba decode-study --layouts 32:8 --cache 32768 ...": flags that run this point alone.
std::string decode_study_command(const DecodeStudyPoint& point);

// Draws the inputs, gates the new tokens in float64 (gating_rows) and accounts the IO.
DecodeIo run_decode_study_point(const DecodeStudyPoint& point);

// The GPU side of a point: which decode steps to time, and how.
struct DecodeTimingOptions {
    const Implementation* impl = nullptr;   // the MoBA decode step (split_decode)
    // The dense decodes of the same caches (split_decode_dense; with the Python bridge PyTorch's
    // SDPA too), each timed; the speedup is over the fastest of them.
    std::vector<const Implementation*> dense;
    TimingOptions timing;
};

// One dense decode at a point: its time, or why it has none (refused the shape, failed).
struct DenseDecodeTiming {
    std::string impl;
    std::optional<Timing> timing;
    std::string note;
};

// What the GPU measured at a point. The MoBA step runs on the study's caches (k as drawn, v drawn
// on the device: v moves no selection) and its own gating, judged against the float64 selection
// on every new token before it is timed; a step whose gating is incorrect is not timed.
struct DecodeStepTiming {
    std::string impl, dense_impl;  // dense_impl: the fastest dense decode timed
    GatingCheck gating;         // the step's selection against the float64 one
    std::int64_t kernel_distinct_blocks = 0;  // summed over (request, group), from the step's selection
    Timing step;                // one decode step, gating included
    Timing attend;              // the same step given the selection (gating excluded)
    Timing dense;               // the fastest dense decode of the same caches
    std::vector<DenseDecodeTiming> dense_all;  // every one asked for, in the order asked
    double prepare_ms = 0;      // decode_prepare's median (block means kept from prefill): once per cache
    double speedup() const { return dense.median_ms / step.median_ms; }
};

// "kind": "decode_io" (reports/FORMAT.md).
struct DecodeIoRecord {
    DecodeStudyPoint point;
    DecodeIo io;
    double seconds = 0;  // host time of the point (inputs, gating, accounting), not a decode time
    std::optional<DecodeStepTiming> timing;  // with a GPU and timing options
    std::string timing_note;                 // why there is no timing, or why it stopped
    // The GPU side failed: the step's selection was incorrect, or an error other than a refusal
    // of the shape (a CUDA fault, a failed dense decode when none was timed). The study then exits 1.
    bool gpu_failed = false;
};

// The point's IO, and with `gpu` its timing (failures of the GPU side become timing_note; the
// IO is kept). seconds is the host time of the whole point.
DecodeIoRecord run_decode_study_record(const DecodeStudyPoint& point, const DecodeTimingOptions* gpu);
void to_json(nlohmann::json& j, const DecodeIoRecord& r);

}  // namespace moba
