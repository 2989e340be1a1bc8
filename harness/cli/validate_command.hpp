// `moba validate REPORT...`: checks reports (from any writer: check, bench, paper, the anchors
// script) against reports/moba-report.schema.json. Exit status 0 when every report is valid,
// 1 when one is not (each violation printed with its JSON pointer), 2 when a file or the schema
// cannot be read.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace moba::cli {

struct ValidateFlags {
    std::vector<std::string> reports;
    // Empty: the installed schema beside the binary (<prefix>/share/moba/, from bin/), else the
    // source tree's (MOBA_DEFAULT_SCHEMA, set by CMake): schema_path().
    std::string schema;
};

CLI::App* add_validate_command(CLI::App& app, ValidateFlags& flags);
int run_validate(const ValidateFlags& flags);

// The schema a validate run reads: `given` when not empty, else the first that exists of
// <directory of the running binary>/../share/moba/moba-report.schema.json and the source tree's.
// Throws std::runtime_error naming every place tried when none exists.
std::string schema_path(const std::string& given);

}  // namespace moba::cli
