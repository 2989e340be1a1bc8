// `moba export REPORT --csv FILE --markdown FILE`: one row per record (columns in
// harness/report_export.hpp). "-" writes to stdout. Exit status 0, or 2 for usage or input
// errors.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct ExportFlags {
    std::string report;
    std::string csv;
    std::string markdown;
};

CLI::App* add_export_command(CLI::App& app, ExportFlags& flags);

// Never throws: errors are printed on stderr and give 2.
int run_export(const ExportFlags& flags);

}  // namespace moba::cli
