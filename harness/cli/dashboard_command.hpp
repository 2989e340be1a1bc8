// `moba dashboard REPORTS... --out DIR`: a static site (index.html, data.js, the page's script
// and style, and the vendored Vega libraries) that shows reports as charts and tables, opened
// from file:// with no server and no network. Views: harness/dashboard_views.hpp.
// Exit status 0 when every report could be shown (gzip files are listed as skipped, not
// errors), 1 when one is invalid (listed on the page; the site is still written with the
// others), 2 for usage errors (a path that does not exist, no report found, no assets or
// schema), before anything is written.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace moba::cli {

struct DashboardFlags {
    std::vector<std::string> inputs;  // report files and folders (searched recursively)
    std::string out;
    std::string schema;  // empty: as `moba validate` finds it (schema_path)
    std::string assets;  // empty: dashboard_assets_path
    double threshold_percent = 5.0;
};

CLI::App* add_dashboard_command(CLI::App& app, DashboardFlags& flags);

// Never throws: errors are printed on stderr and give 2.
int run_dashboard(const DashboardFlags& flags);

// The folder of the page's files: `given` when not empty, else the first that holds
// index.html of <directory of the running binary>/../share/moba/dashboard and the source
// tree's harness/dashboard/assets (MOBA_DEFAULT_DASHBOARD_ASSETS, set by CMake). Throws
// std::runtime_error naming every place tried when none does.
std::string dashboard_assets_path(const std::string& given);

}  // namespace moba::cli
