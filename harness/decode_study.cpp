#include "harness/decode_study.hpp"

#include <fmt/format.h>

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

DecodeIo run_decode_study_point(const DecodeStudyPoint& point) {
    const ref::DecodeBatch batch = decode_study_batch(point);
    const Problem& p = batch.cache;
    ref::RowInputs rows;
    rows.tokens = batch.query_positions();
    QueryRowsAndKeys inputs = make_query_rows_and_keys(p, point.seed, point.inputs, rows.tokens);
    rows.q_rows = std::move(inputs.q_rows);
    rows.k = &inputs.k;
    const ref::GatingResult gating = ref::gating_rows(p, rows);
    const ref::BlockScorer scorer(p, inputs.k);
    const std::int64_t q_row = static_cast<std::int64_t>(p.heads_q) * p.head_dim;
    return decode_io(batch, gating.selection, [&](std::int64_t row, int head, int block) {
        const float* q =
            rows.q_rows.data() + row * q_row + static_cast<std::int64_t>(head) * p.head_dim;
        return scorer.score(q, rows.tokens[static_cast<std::size_t>(row)], head, block).score;
    });
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
         {"time_per_step", "not measured: needs the decode kernels (issue 19)"}};
}

}  // namespace moba
