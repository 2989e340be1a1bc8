// `moba dashboard`: the reports it is given, found, read and validated. A report that cannot
// be shown is a problem listed on the page (and in the exit status), never a reason to drop
// the others.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/schema.hpp"

namespace moba {

// A report read, checked by load_report and valid against the schema.
struct DashboardReport {
    std::string path;  // as found (relative to the working directory when given so)
    nlohmann::json report;
};

// A file that is not shown. kind: "invalid" (fails load_report or the schema: not JSON, not
// a moba-report, an unknown format_version, schema violations) or "skipped" (a form this build
// does not read: gzip-compressed reports). Only "invalid" makes the command fail.
struct DashboardProblem {
    std::string path;
    std::string kind;
    std::string message;               // one line
    std::vector<std::string> details;  // schema violations, at most the first 20
};

struct DashboardInputs {
    std::vector<DashboardReport> reports;
    std::vector<DashboardProblem> problems;
    bool any_invalid() const;
};

// The files behind `inputs`: a file as given, a folder walked recursively for *.json and
// *.json.gz (other files, such as markdown tables or logs beside the reports, are not
// reports), each folder's files in path order. Throws std::invalid_argument naming an input
// that does not exist.
std::vector<std::filesystem::path> report_files(const std::vector<std::string>& inputs);

// Reads and validates each file. Gzip files are listed as skipped with the reason.
DashboardInputs read_dashboard_inputs(const std::vector<std::filesystem::path>& files,
                                      const SchemaValidator& schema);

}  // namespace moba
