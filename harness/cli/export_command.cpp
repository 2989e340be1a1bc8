#include "harness/cli/export_command.hpp"

#include <exception>

#include <fmt/format.h>

#include "harness/report_export.hpp"
#include "harness/report_io.hpp"

namespace moba::cli {

CLI::App* add_export_command(CLI::App& app, ExportFlags& f) {
    CLI::App* cmd =
        app.add_subcommand("export", "Write a report's records as CSV or a markdown table");
    cmd->add_option("report", f.report, "A moba-report JSON file")->required();
    cmd->add_option("--csv", f.csv, "CSV (RFC 4180) to FILE ('-': stdout)");
    cmd->add_option("--markdown", f.markdown, "Markdown table to FILE ('-': stdout)");
    cmd->footer(
        "One row per record; columns: layout, seqlens, heads, kv_heads, head_dim, block, topk, "
        "dtype,\n"
        "impl, phase/check, tensor, median_ms, tflops, speedup_vs_dense, ideal_speedup, "
        "max_abs_err,\n"
        "ratio, outcome. Absent and null fields give empty cells.");
    return cmd;
}

int run_export(const ExportFlags& f) {
    try {
        if (f.csv.empty() && f.markdown.empty()) {
            fmt::print(stderr, "moba export: error: give --csv FILE, --markdown FILE or both\n");
            return 2;
        }
        const nlohmann::json report = load_report(f.report);
        if (!f.csv.empty()) write_text_file(f.csv, export_csv(report));
        if (!f.markdown.empty()) write_text_file(f.markdown, export_markdown(report));
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba export: error: {}\n", e.what());
        return 2;
    }
}

}  // namespace moba::cli
