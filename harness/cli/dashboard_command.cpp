#include "harness/cli/dashboard_command.hpp"

#include "harness/cli/installed_files.hpp"

#include <fmt/format.h>

#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "harness/cli/validate_command.hpp"
#include "harness/dashboard_inputs.hpp"
#include "harness/dashboard_views.hpp"
#include "harness/report_io.hpp"
#include "harness/schema.hpp"
#include "harness/version.hpp"

namespace moba::cli {

namespace fs = std::filesystem;

CLI::App* add_dashboard_command(CLI::App& app, DashboardFlags& f) {
    CLI::App* cmd = app.add_subcommand(
        "dashboard", "Write a static site (charts and tables) of reports, for file:// viewing");
    cmd->add_option("reports", f.inputs, "Report files, or folders searched recursively for *.json")
        ->required();
    cmd->add_option("--out", f.out, "Folder to write index.html and its files into")->required();
    cmd->add_option("--threshold", f.threshold_percent,
                    "In percent, as `moba compare --threshold`: the history's and the side by "
                    "side's verdicts")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--schema", f.schema,
                    "JSON Schema file (default: as `moba validate` finds it)");
    cmd->add_option("--assets", f.assets,
                    "The page's files (default: share/moba/dashboard beside an installed binary, "
                    "else the source tree's harness/dashboard/assets)");
    cmd->footer(
        "Views: Figure 2 (ours, published, ideal), throughput, history across commits (with\n"
        "compare's verdicts), correctness, and a side by side of two reports. Reports that fail\n"
        "validation or have an unknown format_version are listed at the top of the page.\n"
        "Exit status: 0 all shown, 1 some report invalid (the others are still shown), 2 usage\n"
        "or input error (nothing written).");
    return cmd;
}

std::string dashboard_assets_path(const std::string& given) {
    if (!given.empty()) {
        if (!fs::exists(fs::path(given) / "index.html"))
            throw std::invalid_argument(fmt::format("--assets {}: holds no index.html", given));
        return given;
    }
    return installed_or_source_file("dashboard", MOBA_DEFAULT_DASHBOARD_ASSETS, "index.html", "--assets DIR");
}

int run_dashboard(const DashboardFlags& f) {
    std::vector<fs::path> files;
    std::string assets;
    std::optional<SchemaValidator> schema;
    try {
        files = report_files(f.inputs);
        if (files.empty())
            throw std::invalid_argument("no *.json or *.json.gz report found in the inputs given");
        assets = dashboard_assets_path(f.assets);
        schema.emplace(SchemaValidator::from_file(schema_path(f.schema)));
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba dashboard: error: {}\n", e.what());
        return 2;
    }
    const DashboardInputs inputs = read_dashboard_inputs(files, *schema);
    try {
        nlohmann::json data = dashboard_data(inputs, f.threshold_percent / 100.0);
        data["generated_by"] = fmt::format("moba {} ({})", project_version(), git_sha());
        const fs::path out(f.out);
        fs::create_directories(out);
        fs::copy(assets, out, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
        // A script assigning a variable, not a .json to fetch: file:// pages may not fetch.
        write_text_file((out / "data.js").string(),
                        "window.MOBA_DASHBOARD = " +
                            data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                            ";\n");
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba dashboard: error: {}\n", e.what());
        return 2;
    }
    std::size_t invalid = 0, skipped = 0;
    for (const DashboardProblem& p : inputs.problems) {
        (p.kind == "invalid" ? invalid : skipped) += 1;
        fmt::print(stderr, "{}: {}: {}\n", p.path, p.kind, p.message);
    }
    fmt::print("dashboard: {} reports shown, {} invalid, {} skipped: {}\n", inputs.reports.size(),
               invalid, skipped, (fs::path(f.out) / "index.html").string());
    return inputs.any_invalid() ? 1 : 0;
}

}  // namespace moba::cli
