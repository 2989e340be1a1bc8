// `moba decode-study` as a user runs it: a tiny grid writes a complete report that
// `moba validate` accepts, with one decode_io record per grid point and figures that hold
// together; bad flags and a point too large for host memory exit 2 naming the value, before any
// work (no report written). And the schema's decode_io rules: the record writer's output passes,
// a record without its fields does not.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "harness/decode_study.hpp"
#include "harness/report.hpp"
#include "harness/schema.hpp"
#include "suites/binary_run.hpp"

namespace {

namespace fs = std::filesystem;

using moba::test::scratch;
using MobaRun = moba::test::BinaryRun;
MobaRun run_moba(const std::string& args) { return moba::test::run_binary(MOBA_BINARY, args, "decode_study_cli.log"); }

TEST(DecodeStudyCli, TinyGridWritesAValidReport) {
    const fs::path out = scratch("decode_study.json");
    fs::remove(out);
    const MobaRun r = run_moba(
        "decode-study --layouts 8:8,8:2,8:1 --cache 1000,300 --batch 2 --block 32 --topk 3 "
        "--head-dim 16 --inputs normal,sink --seed 3 --out " +
        out.string());
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("[12/12] 8:1 cache 300 batch 2 block 32 topk 3 sink"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("not measured"), std::string::npos) << r.output;

    std::ifstream in(out);
    const nlohmann::json doc = nlohmann::json::parse(in);
    EXPECT_TRUE(doc.at("complete").get<bool>());
    const auto& records = doc.at("records");
    ASSERT_EQ(records.size(), 12u);  // 3 layouts x 2 caches x 2 families
    for (const auto& rec : records) {
        EXPECT_EQ(rec.at("kind"), "decode_io");
        const double measured = rec.at("measured_io_ratio"), ideal = rec.at("ideal_io_ratio");
        EXPECT_GE(measured, ideal) << rec.dump();
        EXPECT_LE(measured, 1.0) << rec.dump();
        EXPECT_GT(ideal, 0.0) << rec.dump();
        if (rec.at("config").at("heads_kv") == 8) {
            EXPECT_EQ(measured, ideal) << rec.dump();  // MHA: one head per group
        }
        EXPECT_NE(rec.at("time_per_step").get<std::string>().find("not measured"),
                  std::string::npos);
    }

    const MobaRun valid =
        run_moba("validate --schema " + std::string(MOBA_SCHEMA_PATH) + " " + out.string());
    EXPECT_EQ(valid.status, 0) << valid.output;
    fs::remove(out);
}

// A GQA 4:2 point small enough for the float64 gating in milliseconds.
moba::DecodeStudyPoint small_point(int batch) {
    moba::DecodeStudyPoint p;
    p.heads_q = 4;
    p.heads_kv = 2;
    p.cache_len = 200;
    p.batch = batch;
    p.block = 32;
    p.head_dim = 16;
    return p;
}

TEST(DecodeIoSchema, TheRecordWriterPassesAndMissingFieldsAreNamed) {
    const moba::DecodeStudyPoint p = small_point(2);
    const moba::DecodeIoRecord record{p, moba::run_decode_study_point(p), 0.5};
    moba::ReportWriter writer("", "decode-study", {"moba", "decode-study"});
    writer.add(record);
    writer.finish();
    const auto schema = moba::SchemaValidator::from_file(MOBA_SCHEMA_PATH);
    nlohmann::json doc = writer.document();
    const auto errors = schema.validate(doc);
    EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front());
    doc["records"][0].erase(
        "time_per_step");  // the statement that time is not measured is required
    const auto missing = schema.validate(doc);
    ASSERT_FALSE(missing.empty());
    EXPECT_NE(missing.front().find("/records/0: required property 'time_per_step' is missing"),
              std::string::npos)
        << missing.front();
}

// A timed record: the fastest of the dense decodes is `dense`, the others are listed with their
// time or the reason they have none, and the schema takes both.
TEST(DecodeIoSchema, TimedRecordsListEveryDenseDecode) {
    auto timed = [](double ms) {
        moba::Timing t = moba::summarize({ms});
        t.stop = "converged";
        return t;
    };
    const moba::DecodeStudyPoint p = small_point(1);
    moba::DecodeIoRecord record{p, moba::run_decode_study_point(p), 0.5};
    moba::DecodeStepTiming t;
    t.impl = "split_decode";
    t.step = timed(0.5);
    t.attend = timed(0.4);
    t.dense_all = {{"split_decode_dense", timed(2.0), ""},
                   {"sdpa_flash_decode", timed(1.0), ""},
                   {"sdpa_cudnn_decode", std::nullopt, "failed: no kernel"}};
    t.dense_impl = "sdpa_flash_decode";
    t.dense = *t.dense_all[1].timing;
    record.timing = t;
    moba::ReportWriter writer("", "decode-study", {"moba", "decode-study"});
    writer.add(record);
    writer.finish();
    const nlohmann::json doc = writer.document();
    const auto errors = moba::SchemaValidator::from_file(MOBA_SCHEMA_PATH).validate(doc);
    EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front());
    const nlohmann::json& gpu = doc["records"][0]["gpu"];
    EXPECT_EQ(gpu["dense_impl"], "sdpa_flash_decode");
    EXPECT_DOUBLE_EQ(gpu["speedup_vs_dense"].get<double>(), 2.0);
    ASSERT_EQ(gpu["dense_all"].size(), 3u);
    EXPECT_TRUE(gpu["dense_all"][2]["timing"].is_null());
    EXPECT_EQ(gpu["dense_all"][2]["note"], "failed: no kernel");
}

TEST(DecodeStudyCli, BadFlagsAndOversizedPointsExitTwoBeforeWork) {
    const fs::path out = scratch("decode_study_bad.json");
    fs::remove(out);
    const MobaRun layout =
        run_moba("decode-study --layouts 32:32,32:5 --cache 1K --out " + out.string());
    EXPECT_EQ(layout.status, 2) << layout.output;
    EXPECT_NE(layout.output.find("'32:5': 5 kv heads do not divide 32 query heads"),
              std::string::npos)
        << layout.output;
    const MobaRun malformed =
        run_moba("decode-study --layouts 32x8 --cache 1K --out " + out.string());
    EXPECT_EQ(malformed.status, 2) << malformed.output;
    EXPECT_NE(malformed.output.find("'32x8'"), std::string::npos) << malformed.output;
    const MobaRun q_len =
        run_moba("decode-study --layouts 4:4 --cache 8 --q-len 9 --out " + out.string());
    EXPECT_EQ(q_len.status, 2) << q_len.output;
    EXPECT_NE(q_len.output.find("q_len 9"), std::string::npos) << q_len.output;
    const MobaRun dense =
        run_moba("decode-study --cache 1K --dense split_decode_dense,bogus --out " + out.string());
    EXPECT_EQ(dense.status, 2) << dense.output;
    EXPECT_NE(dense.output.find("--dense 'bogus' is not a dense decode"), std::string::npos) << dense.output;
    const MobaRun moba_as_dense = run_moba("decode-study --cache 1K --dense split_decode --out " + out.string());
    EXPECT_EQ(moba_as_dense.status, 2) << moba_as_dense.output;
    EXPECT_NE(moba_as_dense.output.find("--dense 'split_decode' is not a dense decode"), std::string::npos)
        << moba_as_dense.output;
    const MobaRun family = run_moba("decode-study --inputs normal,spiky --out " + out.string());
    EXPECT_EQ(family.status, 2) << family.output;
    EXPECT_NE(family.output.find("'spiky'"), std::string::npos) << family.output;
    // 64 requests of 1M tokens, 32 kv heads of 128: 1 TiB of keys alone.
    const MobaRun huge =
        run_moba("decode-study --layouts 32:32 --cache 1K,1M --batch 64 --out " + out.string());
    EXPECT_EQ(huge.status, 2) << huge.output;
    EXPECT_NE(huge.output.find("grid point 32:32 cache 1M batch 64 needs about 1040.0 GiB"),
              std::string::npos)
        << huge.output;
    EXPECT_NE(huge.output.find("GiB of host memory"), std::string::npos) << huge.output;
    EXPECT_FALSE(fs::exists(out)) << "a refused run must not leave a report";
}

}  // namespace
