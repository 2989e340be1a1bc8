// `moba compare BASE NEW`: bench and check records of two reports side by side, with a verdict
// per pair (rules in harness/report_compare.hpp). Exit status: 0 nothing regressed, 1 some
// bench pair slower or some check pair regressed or worse beyond the threshold, or no pair
// matched at all (unless allow_empty), 2 usage or input errors (unreadable file, not a
// moba-report, wrong version).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct CompareFlags {
    std::string base;
    std::string next;
    double threshold_percent = 5.0;  // percent: 5 means 5%
    std::string markdown;            // "-" for stdout
    bool allow_empty = false;        // no matched pair is not an error
};

CLI::App* add_compare_command(CLI::App& app, CompareFlags& flags);

// Prints the table, writes the markdown file when asked, returns the exit status. Never
// throws: errors are printed on stderr and give 2.
int run_compare(const CompareFlags& flags);

}  // namespace moba::cli
