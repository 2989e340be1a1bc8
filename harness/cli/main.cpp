// moba: the command line of the MoBA correctness and benchmarking harness.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "harness/cli/bench_command.hpp"
#include "harness/cli/check_command.hpp"
#include "harness/cli/compare_command.hpp"
#include "harness/cli/dashboard_command.hpp"
#include "harness/cli/export_command.hpp"
#include "harness/cli/list_command.hpp"
#include "harness/cli/paper_command.hpp"
#include "harness/cli/validate_command.hpp"
#include "harness/version.hpp"

int main(int argc, char** argv) {
    // Redirected to a file or a pipe, progress lines still arrive as they are printed.
    if (!isatty(fileno(stdout))) std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (!isatty(fileno(stderr))) std::setvbuf(stderr, nullptr, _IOLBF, 0);
    const std::vector<std::string> args(argv, argv + argc);
    CLI::App app{"MoBA correctness and benchmarking harness"};
    app.set_version_flag("--version", std::string(moba::project_version()) + " (" + moba::git_sha() + ")");
    app.require_subcommand(1);
    moba::cli::CheckFlags check_flags;
    CLI::App* check = moba::cli::add_check_command(app, check_flags);
    moba::cli::BenchFlags bench_flags;
    CLI::App* bench = moba::cli::add_bench_command(app, bench_flags);
    moba::cli::PaperFlags paper_flags;
    CLI::App* paper = moba::cli::add_paper_command(app, paper_flags);
    moba::cli::ValidateFlags validate_flags;
    CLI::App* validate = moba::cli::add_validate_command(app, validate_flags);
    moba::cli::CompareFlags compare_flags;
    CLI::App* compare = moba::cli::add_compare_command(app, compare_flags);
    moba::cli::ExportFlags export_flags;
    CLI::App* export_cmd = moba::cli::add_export_command(app, export_flags);
    moba::cli::ListFlags list_flags;
    CLI::App* list = moba::cli::add_list_command(app, list_flags);
    moba::cli::DashboardFlags dashboard_flags;
    CLI::App* dashboard = moba::cli::add_dashboard_command(app, dashboard_flags);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;  // usage error
    }
    try {
        if (check->parsed()) return moba::cli::run_check(check_flags, args);
        if (bench->parsed()) return moba::cli::run_bench_command(bench_flags, args);
        if (paper->parsed()) return moba::cli::run_paper(paper_flags, args);
        if (validate->parsed()) return moba::cli::run_validate(validate_flags);
        if (compare->parsed()) return moba::cli::run_compare(compare_flags);
        if (export_cmd->parsed()) return moba::cli::run_export(export_flags);
        if (list->parsed()) return moba::cli::run_list(list_flags);
        if (dashboard->parsed()) return moba::cli::run_dashboard(dashboard_flags);
    } catch (const std::invalid_argument& e) {
        fmt::print(stderr, "moba: error: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba: failed: {}\n", e.what());
        return 1;
    }
    return 2;
}
