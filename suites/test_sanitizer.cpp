// `moba check --sanitize` on the CPU side: the tool names, the summary lines compute-sanitizer
// prints (so a hazard can never be read as a pass), and the refusals before any work.
#include <gtest/gtest.h>

#include <algorithm>
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

// The tool's reports become findings: header and own lines, without the prefix, the banner,
// the summary, the host backtrace or the checked program's output between them.
TEST(Sanitizer, FindingsSayWhere) {
    const std::string racecheck =
        "========= COMPUTE-SANITIZER\n"
        "GPU: NVIDIA H200 (132 SMs)\n"
        "========= Error: Race reported between Write access at void moba_dkdv_kernel<__nv_bfloat16, 64>(...)+0x1a40\n"
        "=========     and Read access at void moba_dkdv_kernel<__nv_bfloat16, 64>(...)+0x2c10 [128 hazards]\n"
        "=========\n"
        "[  1/1] GQA 4x2 bf16 D64 L=300,45,1 Bs=32 k=3 normal  passed\n"
        "========= Warning: Race reported between Read access at void dq_wave_kernel(...)+0x990\n"
        "=========     and Write access at void dq_wave_kernel(...)+0x3a0 [4 hazards]\n"
        "=========\n"
        "========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)\n";
    const auto found = sanitizer_findings(racecheck);
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[0],
              "Error: Race reported between Write access at void moba_dkdv_kernel<__nv_bfloat16, 64>(...)+0x1a40\n"
              "and Read access at void moba_dkdv_kernel<__nv_bfloat16, 64>(...)+0x2c10 [128 hazards]");
    EXPECT_EQ(found[1].rfind("Warning: Race reported between Read access at void dq_wave_kernel", 0), 0u) << found[1];
    EXPECT_EQ(sanitizer_findings(racecheck, 1).size(), 1u);

    const std::string memcheck =
        "========= Invalid __global__ read of size 16 bytes\n"
        "=========     at void dq_wave_kernel<__half, 128>(...)+0x1f30\n"
        "=========     by thread (97,0,0) in block (3,0,0)\n"
        "=========     Address 0x7f0000001000 is out of bounds\n"
        "=========     Saved host backtrace up to driver entry point at kernel launch time\n"
        "=========         Host Frame: [0x2f1d4b] in libcuda.so.1\n"
        "=========         Host Frame: moba::wgmma::moba_backward(...) in moba\n"
        "=========\n"
        "========= ERROR SUMMARY: 1 error\n";
    const auto mem = sanitizer_findings(memcheck);
    ASSERT_EQ(mem.size(), 1u);
    EXPECT_EQ(mem[0],
              "Invalid __global__ read of size 16 bytes\nat void dq_wave_kernel<__half, 128>(...)+0x1f30\n"
              "by thread (97,0,0) in block (3,0,0)\nAddress 0x7f0000001000 is out of bounds");
    // A long report keeps its first lines only.
    EXPECT_EQ(std::count(mem[0].begin(), mem[0].end(), '\n'), 3);
    const auto short_report = sanitizer_findings(memcheck, 5, 2);
    ASSERT_EQ(short_report.size(), 1u);
    EXPECT_EQ(std::count(short_report[0].begin(), short_report[0].end(), '\n'), 1);
    // A clean run has none.
    EXPECT_TRUE(sanitizer_findings("========= COMPUTE-SANITIZER\nok\n========= ERROR SUMMARY: 0 errors\n").empty());
}

// A hazard's record says where: the first finding joins the summary in the reason.
TEST(Sanitizer, AHazardNamesItsKernel) {
    const std::filesystem::path fake = std::filesystem::temp_directory_path() / ("moba_fake_racecheck_" + std::to_string(::getpid()) + ".sh");
    {
        std::ofstream f(fake);
        f << "#!/bin/sh\n"
             "echo '========= Error: Race reported between Write access at void k(int)+0x10'\n"
             "echo '=========     and Read access at void k(int)+0x20 [2 hazards]'\n"
             "echo '========='\n"
             "echo '========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)'\n"
             "exit 3\n";
    }
    std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
    const SanitizerRun run = run_under_sanitizer(SanitizerTool::racecheck, fake.string(), "/bin/true", {"--once"});
    std::filesystem::remove(fake);
    EXPECT_EQ(run.outcome, Outcome::incorrect);
    EXPECT_EQ(run.problems, 1);
    ASSERT_EQ(run.findings.size(), 1u);
    EXPECT_NE(run.summary.find("RACECHECK SUMMARY: 1 hazard"), std::string::npos) << run.summary;
    EXPECT_NE(run.summary.find("first: Error: Race reported between Write access at void k(int)+0x10 and Read access "
                               "at void k(int)+0x20"),
              std::string::npos)
        << run.summary;
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
