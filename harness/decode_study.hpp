// One point of the decode IO study (`moba decode-study`, SEMANTICS.md §9.1): a batch of
// requests with equal cache lengths and q_len new tokens each, inputs of one family (q at the
// new tokens and the caches' k only: gating needs nothing else), the float64 gating of the new
// tokens, and its IO accounting (decode_io.hpp). Time per step and speedup over dense decode
// need the decode kernels and are not measured here; the record says so.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "harness/check.hpp"
#include "harness/decode_io.hpp"
#include "harness/input_families.hpp"
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

// "kind": "decode_io" (reports/FORMAT.md).
struct DecodeIoRecord {
    DecodeStudyPoint point;
    DecodeIo io;
    double seconds = 0;  // host time of the point (inputs, gating, accounting), not a decode time
};
void to_json(nlohmann::json& j, const DecodeIoRecord& r);

}  // namespace moba
