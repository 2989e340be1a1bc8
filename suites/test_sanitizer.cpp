// `moba check --sanitize` on the CPU side: the tool names, the summary lines compute-sanitizer
// prints (so a hazard can never be read as a pass), and the refusals before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

#include "harness/cli/check_command.hpp"
#include "harness/cli/parse.hpp"
#include "harness/sanitizer.hpp"

namespace moba {
namespace {

TEST(Sanitizer, ToolNames) {
    EXPECT_EQ(cli::parse_sanitizer_tools("all").size(), 4u);
    const auto two = cli::parse_sanitizer_tools("racecheck,memcheck");
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0], SanitizerTool::racecheck);
    EXPECT_EQ(to_string(two[1]), "memcheck");
    EXPECT_THROW(cli::parse_sanitizer_tools("racecheck,leakcheck"), std::invalid_argument);
    EXPECT_THROW(cli::parse_sanitizer_tools(""), std::invalid_argument);
}

TEST(Sanitizer, SummaryLines) {
    std::string line;
    EXPECT_EQ(parse_sanitizer_summary(SanitizerTool::memcheck,
                                      "x\n========= ERROR SUMMARY: 0 errors\n", &line), 0);
    EXPECT_EQ(line, "ERROR SUMMARY: 0 error");
    EXPECT_EQ(parse_sanitizer_summary(SanitizerTool::memcheck, "========= ERROR SUMMARY: 3 errors\n"), 3);
    EXPECT_EQ(parse_sanitizer_summary(SanitizerTool::synccheck, "========= ERROR SUMMARY: 1 error\n"), 1);
    // racecheck: errors and warnings are both hazards.
    EXPECT_EQ(parse_sanitizer_summary(
                  SanitizerTool::racecheck,
                  "========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)\n"), 2);
    EXPECT_EQ(parse_sanitizer_summary(
                  SanitizerTool::racecheck,
                  "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)\n"), 0);
    EXPECT_EQ(parse_sanitizer_summary(SanitizerTool::racecheck, "the program crashed\n"), -1);
}

TEST(Sanitizer, RefusedWithoutAGpuAndWithGatingOnly) {
    cli::CheckFlags f;
    f.seqlens = "300,45,1";
    f.sanitize = "racecheck";
    EXPECT_THROW(cli::plan_check(f, /*gpu_present=*/false), std::invalid_argument);
    f.gating_only = true;
    EXPECT_THROW(cli::plan_check(f, /*gpu_present=*/true), std::invalid_argument);
    f.gating_only = false;
    f.sanitize = "leakcheck";
    EXPECT_THROW(cli::plan_check(f, /*gpu_present=*/true), std::invalid_argument);
    f.sanitize = "racecheck,memcheck";
    EXPECT_EQ(cli::plan_check(f, /*gpu_present=*/true).sanitizers.size(), 2u);
}

// The child check runs with MOBA_NO_GUARDS=1, so the tool sees the outputs at their exact size
// (harness/guarded_buffer.hpp). A stand-in sanitizer reports an error unless it has it.
TEST(Sanitizer, TheChildRunsWithoutGuardBands) {
    const std::filesystem::path fake = std::filesystem::temp_directory_path() / ("moba_fake_sanitizer_" + std::to_string(::getpid()) + ".sh");
    {
        std::ofstream f(fake);
        f << "#!/bin/sh\n"
             "if [ \"$MOBA_NO_GUARDS\" = 1 ]; then echo '========= ERROR SUMMARY: 0 errors'; "
             "else echo '========= ERROR SUMMARY: 1 error'; fi\n";
    }
    std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
    const SanitizerRun run = run_under_sanitizer(SanitizerTool::memcheck, fake.string(), "/bin/true", {"--once"});
    EXPECT_EQ(run.problems, 0) << run.summary;
    EXPECT_EQ(run.outcome, Outcome::passed) << run.summary;
    EXPECT_NE(run.command.find("MOBA_NO_GUARDS=1 "), std::string::npos) << run.command;
    std::filesystem::remove(fake);
}

}  // namespace
}  // namespace moba
