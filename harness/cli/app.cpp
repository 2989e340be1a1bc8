#include "harness/cli/app.hpp"

#include <exception>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "harness/cli/bench_command.hpp"
#include "harness/cli/check_command.hpp"
#include "harness/cli/compare_command.hpp"
#include "harness/cli/cp_plan_command.hpp"
#include "harness/cli/export_command.hpp"
#include "harness/cli/dashboard_command.hpp"
#include "harness/cli/decode_study_command.hpp"
#include "harness/cli/list_command.hpp"
#include "harness/cli/paper_command.hpp"
#include "harness/cli/validate_command.hpp"
#include "harness/version.hpp"

namespace moba::cli {

int run_main(const std::vector<std::string>& args) {
    CLI::App app{"MoBA correctness and benchmarking harness"};
    app.set_version_flag("--version", std::string(moba::project_version()) + " (" + moba::git_sha() + ")");
    app.require_subcommand(1);
    CheckFlags check_flags;
    CLI::App* check = add_check_command(app, check_flags);
    BenchFlags bench_flags;
    CLI::App* bench = add_bench_command(app, bench_flags);
    PaperFlags paper_flags;
    CLI::App* paper = add_paper_command(app, paper_flags);
    ValidateFlags validate_flags;
    CLI::App* validate = add_validate_command(app, validate_flags);
    CompareFlags compare_flags;
    CLI::App* compare = add_compare_command(app, compare_flags);
    ExportFlags export_flags;
    CLI::App* export_cmd = add_export_command(app, export_flags);
    ListFlags list_flags;
    CLI::App* list = add_list_command(app, list_flags);
    DashboardFlags dashboard_flags;
    CLI::App* dashboard = add_dashboard_command(app, dashboard_flags);
    DecodeStudyFlags decode_study_flags;
    CLI::App* decode_study = add_decode_study_command(app, decode_study_flags);
    CpPlanFlags cp_plan_flags;
    CLI::App* cp_plan = add_cp_plan_command(app, cp_plan_flags);
    // CLI11 parses argv-style; the strings outlive the parse.
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    try {
        app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;  // usage error
    }
    try {
        if (check->parsed()) return run_check(check_flags, args);
        if (bench->parsed()) return run_bench_command(bench_flags, args);
        if (paper->parsed()) return run_paper(paper_flags, args);
        if (validate->parsed()) return run_validate(validate_flags);
        if (compare->parsed()) return run_compare(compare_flags);
        if (export_cmd->parsed()) return run_export(export_flags);
        if (list->parsed()) return run_list(list_flags);
        if (dashboard->parsed()) return run_dashboard(dashboard_flags);
        if (decode_study->parsed()) return run_decode_study(decode_study_flags, args);
        if (cp_plan->parsed()) return run_cp_plan(cp_plan_flags, args);
    } catch (const std::invalid_argument& e) {
        fmt::print(stderr, "moba: error: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba: failed: {}\n", e.what());
        return 1;
    }
    return 2;
}

}  // namespace moba::cli
