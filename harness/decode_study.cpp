#include "harness/decode_study.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/decode_run.hpp"
#include "harness/device.hpp"
#include "harness/inputs.hpp"
#include "harness/records.hpp"
#include "reference/reference.hpp"

namespace moba {

ref::DecodeBatch decode_study_batch(const DecodeStudyPoint& point) {
    ref::DecodeBatch b;
    b.cache.seqlens.assign(static_cast<std::size_t>(point.batch), point.cache_len);
    b.cache.heads_q = point.heads_q;
    b.cache.heads_kv = point.heads_kv;
    b.cache.head_dim = point.head_dim;
    b.cache.block = point.block;
    b.cache.topk = point.topk;
    b.cache.dtype = point.dtype;
    b.q_lens.assign(static_cast<std::size_t>(point.batch), point.q_len);
    b.validate();
    return b;
}

std::int64_t decode_study_host_bytes(const DecodeStudyPoint& point) {
    const std::int64_t blocks =
        (static_cast<std::int64_t>(point.cache_len) + point.block - 1) / point.block;
    const std::int64_t kv_row = static_cast<std::int64_t>(point.heads_kv) * point.head_dim;
    const std::int64_t k = static_cast<std::int64_t>(point.batch) * point.cache_len * kv_row * 4;
    const std::int64_t q =
        static_cast<std::int64_t>(point.batch) * point.q_len * point.heads_q * point.head_dim * 4;
    const std::int64_t means = 2 * static_cast<std::int64_t>(point.batch) * blocks * kv_row * 2 * 8;
    return k + q + means;
}

std::string decode_study_command(const DecodeStudyPoint& p) {
    return fmt::format(
        "moba decode-study --layouts {}:{} --cache {} --batch {} --block {} --topk {} --head-dim "
        "{} --q-len {} "
        "--dtype {} --inputs {} --seed {}",
        p.heads_q, p.heads_kv, p.cache_len, p.batch, p.block, p.topk, p.head_dim, p.q_len,
        to_string(p.dtype), to_string(p.inputs), p.seed);
}

namespace {

// A point's inputs and float64 gating: the rows of the new tokens (q) and the caches' k.
struct StudyInputs {
    ref::DecodeBatch batch;
    std::vector<float> k;
    ref::RowInputs rows;
    ref::GatingResult gating;
};

std::unique_ptr<StudyInputs> draw_and_gate(const DecodeStudyPoint& point) {
    auto in = std::make_unique<StudyInputs>();
    in->batch = decode_study_batch(point);
    const Problem& p = in->batch.cache;
    in->rows.tokens = in->batch.query_positions();
    QueryRowsAndKeys drawn = make_query_rows_and_keys(p, point.seed, point.inputs, in->rows.tokens);
    in->rows.q_rows = std::move(drawn.q_rows);
    in->k = std::move(drawn.k);
    in->rows.k = &in->k;
    in->gating = ref::gating_rows(p, in->rows);
    return in;
}

DecodeIo study_io(const StudyInputs& in) {
    const Problem& p = in.batch.cache;
    const ref::BlockScorer scorer(p, in.k);
    const std::int64_t q_row = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    return decode_io(in.batch, in.gating.selection, [&](std::int64_t row, int head, int block) {
        const float* q =
            in.rows.q_rows.data() + row * q_row + static_cast<std::int64_t>(head) * p.head_dim;
        return scorer.score(q, in.rows.tokens[static_cast<std::size_t>(row)], head, block).score;
    });
}

// A dense decode of the point's caches, timed; a refusal or a failure becomes its note (the
// other dense decodes are still timed).
DenseDecodeTiming time_dense(const Implementation& dense, const DecodeCase& c, const StudyInputs& in,
                             const TimingOptions& timing) {
    DenseDecodeTiming d{dense.name, std::nullopt, ""};
    if (const Support s = dense.supports_decode(in.batch.cache, c.max_q_len()); !s.ok) {
        d.note = "not supported: " + s.reason;
        return d;
    }
    try {
        DeviceDecode run(dense, c, in.rows.q_rows, in.k);
        const DecodeArgs args = run.args(false);
        d.timing = measure([&](cudaStream_t) { dense.decode(args); }, nullptr, timing);
    } catch (const std::exception& e) {
        d.note = fmt::format("failed: {}", e.what());
    }
    return d;
}

std::string dense_notes(const std::vector<DenseDecodeTiming>& all) {
    std::string text;
    for (const DenseDecodeTiming& d : all) text += (text.empty() ? "" : "; ") + d.impl + " " + d.note;
    return text;
}

DecodeStepTiming time_point(const DecodeStudyPoint& point, const StudyInputs& in, const DecodeTimingOptions& o) {
    if (const Support s = o.impl->supports_decode(in.batch.cache, point.q_len); !s.ok)
        throw std::invalid_argument(s.reason);
    DecodeStepTiming t;
    t.impl = o.impl->name;
    DecodeCase c;
    c.base = CheckCase{in.batch.cache, point.seed, point.inputs};
    c.q_lens = in.batch.q_lens;
    {
        DeviceDecode step(*o.impl, c, in.rows.q_rows, in.k);  // runs decode_prepare once
        if (o.impl->decode_prepare) {
            const DecodeArgs prepare_args = step.args(true);
            t.prepare_ms = measure([&](cudaStream_t) { o.impl->decode_prepare(prepare_args); },
                                   nullptr, o.timing)
                               .median_ms;
        }
        const DeviceDecode::Result gated = step.run(true);
        t.gating = compare_gating_rows(in.batch.cache, gated.sel, in.gating, in.rows,
                                       o.impl->block_means == BlockMeans::rounded);
        const DecodeIo kernel_io = decode_io(in.batch, gated.sel, [](std::int64_t, int, int) { return 0.0; });
        for (const GroupIo& g : kernel_io.groups) t.kernel_distinct_blocks += g.distinct_blocks;
        if (is_failure(t.gating.outcome)) return t;  // not timed: the caller notes why
        // The arguments are built once, outside the timed region, on the stream measure() times
        // (the default one, as args() sets): a sample enqueues the step and nothing else.
        const DecodeArgs gate_args = step.args(true), given_args = step.args(false);
        t.step = measure([&](cudaStream_t) { o.impl->decode(gate_args); }, nullptr,
                         o.timing);
        t.attend = measure([&](cudaStream_t) { o.impl->decode(given_args); },
                           nullptr, o.timing);
    }
    for (const Implementation* dense : o.dense) t.dense_all.push_back(time_dense(*dense, c, in, o.timing));
    const DenseDecodeTiming* fastest = nullptr;
    for (const DenseDecodeTiming& d : t.dense_all)
        if (d.timing && (!fastest || d.timing->median_ms < fastest->timing->median_ms)) fastest = &d;
    if (!fastest) {
        const bool all_refused = std::all_of(t.dense_all.begin(), t.dense_all.end(), [](const DenseDecodeTiming& d) {
            return d.note.starts_with("not supported");
        });
        const std::string why = "no dense decode could be timed: " + dense_notes(t.dense_all);
        if (all_refused) throw std::invalid_argument(why);
        throw std::runtime_error(why);
    }
    t.dense_impl = fastest->impl;
    t.dense = *fastest->timing;
    return t;
}

}  // namespace

DecodeIo run_decode_study_point(const DecodeStudyPoint& point) { return study_io(*draw_and_gate(point)); }

DecodeIoRecord run_decode_study_record(const DecodeStudyPoint& point, const DecodeTimingOptions* gpu) {
    const auto start = std::chrono::steady_clock::now();
    const std::unique_ptr<StudyInputs> in = draw_and_gate(point);
    DecodeIoRecord r{point, study_io(*in), 0.0, std::nullopt, ""};
    if (!gpu) {
        r.timing_note = "not measured: no GPU (or no --impl) in this run";
    } else {
        try {
            r.timing = time_point(point, *in, *gpu);
            if (is_failure(r.timing->gating.outcome)) {
                r.timing_note = fmt::format("not timed: {}'s selection is {} against the float64 one ({})", gpu->impl->name,
                                            to_string(r.timing->gating.outcome), r.timing->gating.reason);
                r.gpu_failed = true;
            }
        } catch (const std::invalid_argument& e) {  // the step refuses the shape: recorded, not a failure
            r.timing.reset();
            r.timing_note = fmt::format("not measured: {}", e.what());
        } catch (const OutOfDeviceMemory& e) {  // refused before allocating: not a failure either
            r.timing.reset();
            r.timing_note = fmt::format("not measured: {}", e.what());
        } catch (const std::exception& e) {
            r.timing.reset();
            r.timing_note = fmt::format("not measured: {}", e.what());
            r.gpu_failed = true;
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

void to_json(nlohmann::json& j, const DecodeIoRecord& r) {
    const DecodeStudyPoint& p = r.point;
    const ref::DecodeBatch batch = decode_study_batch(p);
    const DecodeIo& io = r.io;
    j = {{"kind", "decode_io"},
         {"config", config_json(CheckCase{batch.cache, p.seed, p.inputs})},
         {"impl", "float64_gating"},
         {"outcome", to_string(Outcome::passed)},
         {"reason", ""},
         {"command", decode_study_command(p)},
         {"q_lens", batch.q_lens},
         {"element_bytes", dtype_bytes(p.dtype)},
         {"groups", io.groups.size()},
         {"distinct_blocks_per_group", io.distinct_blocks_mean()},
         {"measured_bytes", io.measured_bytes},
         {"ideal_bytes", io.ideal_bytes},
         {"dense_bytes", io.dense_bytes},
         {"measured_io_ratio", io.measured_ratio()},
         {"ideal_io_ratio", io.ideal_ratio()},
         {"union_extra_blocks_per_head", io.union_extra_blocks_per_head()},
         {"vote_bytes", io.vote_bytes},
         {"vote_io_ratio", io.vote_ratio()},
         {"vote_recall", io.vote_recall()},
         {"host_seconds", r.seconds},
         {"time_per_step", r.timing && r.timing_note.empty() ? "measured" : r.timing_note}};
    if (const auto& t = r.timing) {
        nlohmann::json g = {{"outcome", to_string(t->gating.outcome)}, {"pairs", t->gating.pairs},
                  {"mismatches", t->gating.mismatches}, {"near_ties", t->gating.near_ties},
                  {"near_tie_mismatches", t->gating.near_tie_mismatches}, {"exact_ties", t->gating.exact_ties},
                  {"tie_violations", t->gating.tie_violations}, {"invalid", t->gating.invalid},
                  {"reason", t->gating.reason}};
        j["gpu"] = {{"impl", t->impl},
                    {"dense_impl", t->dense_impl},
                    {"gating_check", g},
                    {"kernel_distinct_blocks_per_group",
                     io.groups.empty() ? 0.0 : static_cast<double>(t->kernel_distinct_blocks) / static_cast<double>(io.groups.size())},
                    {"prepare_ms", t->prepare_ms}};
        if (r.timing_note.empty()) {
            j["gpu"]["step"] = timing_json(t->step);
            j["gpu"]["attend"] = timing_json(t->attend);
            j["gpu"]["dense"] = timing_json(t->dense);
            nlohmann::json all = nlohmann::json::array();
            for (const DenseDecodeTiming& d : t->dense_all)
                all.push_back({{"impl", d.impl},
                               {"timing", d.timing ? timing_json(*d.timing) : nlohmann::json(nullptr)},
                               {"note", d.note}});
            j["gpu"]["dense_all"] = all;
            j["gpu"]["speedup_vs_dense"] = t->speedup();
            j["gpu"]["step_gb_per_s"] = static_cast<double>(io.measured_bytes) / (t->step.median_ms * 1e6);
            j["gpu"]["dense_gb_per_s"] = static_cast<double>(io.dense_bytes) / (t->dense.median_ms * 1e6);
            j["gpu"]["under_sampled"] = t->step.under_sampled || t->attend.under_sampled || t->dense.under_sampled;
        }
    }
}

}  // namespace moba
