// `moba compare BASE NEW`: bench records of two reports side by side, with a verdict per pair
// (rule in harness/report_compare.hpp). Exit status: 0 none slower, 1 some pair slower beyond
// the threshold, 2 usage or input errors (unreadable file, not a moba-report, wrong version).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct CompareFlags {
    std::string base;
    std::string next;
    double threshold_percent = 5.0;
    std::string markdown;  // "-" for stdout
};

CLI::App* add_compare_command(CLI::App& app, CompareFlags& flags);

// Prints the table, writes the markdown file when asked, returns the exit status. Never
// throws: errors are printed on stderr and give 2.
int run_compare(const CompareFlags& flags);

}  // namespace moba::cli
