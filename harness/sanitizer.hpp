// Races and memory errors as a verdict: runs this program's own `moba check` on one small
// configuration under NVIDIA compute-sanitizer (racecheck, memcheck, synccheck, initcheck) and
// reads the tool's summary line. A hazard or error makes the check incorrect; a sanitizer that
// cannot run (not installed, crashed) makes it failed, with the reason; the command that
// reproduces it is kept. Used by `moba check --sanitize` and ci/gpu_verify.sh.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "harness/outcome.hpp"

namespace moba {

enum class SanitizerTool { memcheck, racecheck, synccheck, initcheck };

std::string_view to_string(SanitizerTool tool);
// Throws std::invalid_argument naming the bad text and the valid names.
SanitizerTool parse_sanitizer_tool(std::string_view text);
// (Lists of tools: cli::parse_sanitizer_tools, harness/cli/parse.hpp.)

struct SanitizerRun {
    SanitizerTool tool = SanitizerTool::memcheck;
    std::string command;       // the full command line that was run (reproduces the record)
    std::int64_t problems = 0; // errors (memcheck, synccheck, initcheck) or hazards (racecheck)
    int exit_status = 0;       // of compute-sanitizer
    std::string summary;       // the tool's summary line, or what went wrong
    // The tool's first reports (sanitizer_findings): which kernel, access and line, so a failing
    // record says where without a rerun.
    std::vector<std::string> findings;
    Outcome outcome = Outcome::passed;
};

// The number in a summary line such as "========= ERROR SUMMARY: 3 errors" or
// "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"; -1 if the text has
// no summary line. Racecheck counts its errors and warnings both (a warning is a hazard too).
std::int64_t parse_sanitizer_summary(SanitizerTool tool, std::string_view output,
                                     std::string* line = nullptr);

// The first max_findings problem reports in compute-sanitizer's output, each its header line
// ("Error: Race reported between Write access at kernel+0x1a0 in file.cu:42", "Invalid
// __global__ read of size 4 bytes", ...) and up to max_lines - 1 of its indented lines ("and
// Read access at ...", "at kernel+0x70", "by thread (0,0,0) in block (3,0,0)", "Address ... is
// out of bounds"), without the "=========" prefix or the host backtrace; lines joined by '\n'.
// Not findings: the banner, the summary, the program's own output (lines without the prefix).
std::vector<std::string> sanitizer_findings(std::string_view output, std::size_t max_findings = 5,
                                            std::size_t max_lines = 6);

// Runs `sanitizer --tool T --error-exitcode 3 self_exe check_args...` and judges its output.
// sanitizer: path or name of compute-sanitizer. Never throws for a failing child: the result
// says failed with the reason.
SanitizerRun run_under_sanitizer(SanitizerTool tool, const std::string& sanitizer,
                                 const std::string& self_exe,
                                 const std::vector<std::string>& check_args);

// compute-sanitizer's path: $MOBA_COMPUTE_SANITIZER, then PATH, then /usr/local/cuda/bin; empty
// when none is found.
std::string find_compute_sanitizer();

// This process's executable (/proc/self/exe).
std::string self_executable();

}  // namespace moba
