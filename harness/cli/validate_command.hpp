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
    std::string schema = MOBA_DEFAULT_SCHEMA;  // the source tree's schema, set by CMake
};

CLI::App* add_validate_command(CLI::App& app, ValidateFlags& flags);
int run_validate(const ValidateFlags& flags);

}  // namespace moba::cli
