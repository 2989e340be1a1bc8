// The JSON report writer: format fields, atomic rewrites, "complete" only after finish(),
// summaries, and a clear error for an unwritable path.
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness/report.hpp"

namespace moba {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

fs::path temp_dir() {
    const fs::path dir = fs::temp_directory_path() /
                         ("moba_report_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                          "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    return dir;
}

TEST(Report, IncompleteUntilFinished) {
    const fs::path path = temp_dir() / "sub" / "r.json";  // parent folders are created
    ReportWriter w(path, "check", {"moba", "check", "--seqlens", "17"});
    ASSERT_TRUE(fs::exists(path));
    EXPECT_FALSE(read_json(path)["complete"].get<bool>());

    w.add({{"impl", "naive"}, {"outcome", "passed"}});
    w.add({{"impl", "naive"}, {"outcome", "incorrect"}});
    w.flush();
    auto doc = read_json(path);
    EXPECT_FALSE(doc["complete"].get<bool>());
    EXPECT_EQ(doc["records"].size(), 2u);
    EXPECT_FALSE(fs::exists(path.string() + ".partial"));

    w.finish();
    doc = read_json(path);
    EXPECT_TRUE(doc["complete"].get<bool>());
    EXPECT_EQ(doc["format"], kReportFormat);
    EXPECT_EQ(doc["format_version"], kReportFormatVersion);
    EXPECT_EQ(doc["meta"]["tool"], "check");
    EXPECT_EQ(doc["meta"]["command"], "moba check --seqlens 17");
    EXPECT_TRUE(doc["meta"].contains("git_sha"));
    EXPECT_TRUE(doc["meta"]["git_dirty"].is_boolean());
    EXPECT_TRUE(doc["meta"].contains("finished"));
    EXPECT_TRUE(doc["device"].contains("present"));
    EXPECT_EQ(doc["summary"]["records"], 2);
    EXPECT_EQ(doc["summary"]["passed"], 1);
    EXPECT_EQ(doc["summary"]["incorrect"], 1);
    EXPECT_EQ(doc["summary"]["failed"], 0);
    fs::remove_all(path.parent_path().parent_path());
}

// A bench state's interim records (its implementations done so far) are replaced on each
// hand-over and at the state's end; the records before the state are kept, and every flush is
// on disk.
TEST(Report, InterimRecordsAreReplacedNotDuplicated) {
    const fs::path path = temp_dir() / "r.json";
    ReportWriter w(path, "bench", {"moba", "bench"});
    w.add({{"impl", "earlier_state"}});
    const std::size_t kept = w.size();
    w.replace_from(kept, {{{"impl", "moba"}}});
    w.flush();
    EXPECT_EQ(read_json(path)["records"].size(), 2u);
    w.replace_from(kept, {{{"impl", "moba"}, {"speedup", 2}}, {{"impl", "dense"}}});
    w.flush();
    const auto doc = read_json(path);
    ASSERT_EQ(doc["records"].size(), 3u);
    EXPECT_EQ(doc["records"][0]["impl"], "earlier_state");
    EXPECT_EQ(doc["records"][1]["speedup"], 2);
    EXPECT_EQ(doc["records"][2]["impl"], "dense");
    EXPECT_EQ(doc["summary"]["records"], 3);
    EXPECT_THROW(w.replace_from(4, {}), std::logic_error);
    fs::remove_all(path.parent_path());
}

TEST(Report, UnwritablePathThrowsBeforeAnyWork) {
    const fs::path dir = temp_dir();
    fs::create_directories(dir);
    const fs::path blocker = dir / "file";
    std::ofstream(blocker) << "x";
    // A path below a regular file can never be created.
    EXPECT_ANY_THROW(ReportWriter(blocker / "r.json", "check", {"moba"}));
    fs::remove_all(dir);
}

TEST(Report, InMemoryWhenPathEmpty) {
    ReportWriter w("", "check", {"moba"});
    w.add({{"outcome", "failed"}});
    w.finish();
    EXPECT_EQ(w.document()["summary"]["failed"], 1);
    EXPECT_TRUE(w.document()["complete"].get<bool>());
}

TEST(Report, ShellJoinQuotesWhatNeedsIt) {
    EXPECT_EQ(shell_join({"moba", "check", "--seqlens", "1,2"}), "moba check --seqlens 1,2");
    EXPECT_EQ(shell_join({"moba", "a b", ""}), "moba 'a b' ''");
    EXPECT_EQ(shell_join({"it's"}), "'it'\\''s'");
}

TEST(Report, DeviceJsonWithoutGpu) {
    DeviceInfo none;
    none.reason = "no GPU found (test)";
    const auto j = device_json(none);
    EXPECT_FALSE(j["present"].get<bool>());
    EXPECT_EQ(j["name"], "no GPU");
    EXPECT_EQ(j["reason"], "no GPU found (test)");
}

TEST(Report, OutcomeNamesRoundTrip) {
    for (Outcome o : {Outcome::passed, Outcome::incorrect, Outcome::failed, Outcome::not_supported,
                      Outcome::skipped})
        EXPECT_EQ(parse_outcome(to_string(o)), o);
    EXPECT_THROW(parse_outcome("fine"), std::invalid_argument);
}

}  // namespace
}  // namespace moba
