#include "harness/cli/compare_command.hpp"

#include <exception>

#include <fmt/format.h>

#include "harness/report_compare.hpp"
#include "harness/report_io.hpp"

namespace moba::cli {

CLI::App* add_compare_command(CLI::App& app, CompareFlags& f) {
    CLI::App* cmd =
        app.add_subcommand("compare", "Compare the bench and check records of two reports");
    cmd->add_option("base", f.base, "Report of the baseline run (BASE)")->required();
    cmd->add_option("new", f.next, "Report of the run to judge (NEW)")->required();
    cmd->add_option("--threshold", f.threshold_percent,
                    "In percent (5 means 5%, 0.05 means 0.05%): the smallest change of a median "
                    "called faster or slower, and the smallest rise of a check's ratio, in percent "
                    "of its bound, called worse")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--markdown", f.markdown,
                    "Also write the comparison as markdown to FILE ('-': stdout)");
    cmd->add_flag("--allow-empty", f.allow_empty,
                  "Exit 0 even when no record of BASE matched one of NEW (by default that is an "
                  "error: the wrong files were given)");
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
        "Check records match on (config without seed, impl, check, tensor); ratio is the\n"
        "record's bound ratio (at most 1 passes):\n"
        "  passed -> incorrect or failed                            regressed\n"
        "  incorrect or failed -> passed                            fixed\n"
        "  new.ratio - base.ratio > threshold/100                   worse\n"
        "  new.ratio - base.ratio < -threshold/100                  better\n"
        "The threshold is in percent: --threshold 5 (the default) is 5%; --threshold 0.05 is\n"
        "0.05%.\n"
        "Exit status: 0 nothing slower or worse, 1 some bench pair slower or some check\n"
        "regressed or worse, or no pair matched at all (without --allow-empty), 2 usage or\n"
        "input error.");
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
        if (c.matched() == 0 && !f.allow_empty) {
            fmt::print(stderr, "moba compare: {}\n", empty_comparison_message(c, f.base, f.next));
            return 1;
        }
        return c.regression() ? 1 : 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba compare: error: {}\n", e.what());
        return 2;
    }
}

}  // namespace moba::cli
