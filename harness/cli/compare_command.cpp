#include "harness/cli/compare_command.hpp"

#include <exception>

#include <fmt/format.h>

#include "harness/report_compare.hpp"
#include "harness/report_io.hpp"

namespace moba::cli {

CLI::App* add_compare_command(CLI::App& app, CompareFlags& f) {
    CLI::App* cmd = app.add_subcommand("compare", "Compare the bench records of two reports");
    cmd->add_option("base", f.base, "Report of the baseline run (BASE)")->required();
    cmd->add_option("new", f.next, "Report of the run to judge (NEW)")->required();
    cmd->add_option("--threshold", f.threshold_percent,
                    "Smallest change in percent called faster or slower")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--markdown", f.markdown,
                    "Also write the comparison as markdown to FILE ('-': stdout)");
    cmd->footer(
        "Bench records match on (config without seed, impl, phase, gating); within one key\n"
        "the i-th record of BASE pairs with the i-th of NEW. For a pair that passed in both:\n"
        "  change = new.median_ms / base.median_ms - 1\n"
        "  noise  = max(1%, sqrt(base.rel_stddev^2 + new.rel_stddev^2))\n"
        "  |change| <= noise                                       same\n"
        "  |change| <= threshold                                   ambiguous\n"
        "  either side's [min_ms, max_ms] holds the other's median ambiguous\n"
        "  otherwise                                               faster (change < 0) or slower\n"
        "Unmatched records and records whose outcome is not passed are listed.\n"
        "Exit status: 0 nothing slower, 1 some pair slower, 2 usage or input error.");
    return cmd;
}

int run_compare(const CompareFlags& f) {
    try {
        const nlohmann::json base = load_report(f.base);
        const nlohmann::json next = load_report(f.next);
        const Comparison c =
            compare_reports(base, next, f.threshold_percent / 100.0, f.base, f.next);
        // With the markdown on stdout the terminal table would only get in its way.
        if (f.markdown != "-") fmt::print("{}", comparison_text(c, f.base, f.next));
        if (!f.markdown.empty())
            write_text_file(f.markdown, comparison_markdown(c, f.base, f.next));
        return c.regression() ? 1 : 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba compare: error: {}\n", e.what());
        return 2;
    }
}

}  // namespace moba::cli
