#include "harness/report_export.hpp"

#include <fmt/format.h>

#include "harness/report_io.hpp"

namespace moba {
namespace {

using nlohmann::json;

// Where each column's value lives: a JSON pointer into the record, or two (phase/check).
struct Column {
    const char* name;
    const char* pointer;
    const char* fallback = nullptr;  // tried when `pointer` is absent
    bool numeric = false;
};

const std::vector<Column>& columns() {
    static const std::vector<Column> c = {
        {"layout", "/config/layout"},
        {"seqlens", "/config/seqlens"},
        {"heads", "/config/heads_q", nullptr, true},
        {"kv_heads", "/config/heads_kv", nullptr, true},
        {"head_dim", "/config/head_dim", nullptr, true},
        {"block", "/config/block", nullptr, true},
        {"topk", "/config/topk", nullptr, true},
        {"dtype", "/config/dtype"},
        {"impl", "/impl"},
        {"phase/check", "/phase", "/check"},
        {"tensor", "/tensor"},
        {"median_ms", "/timing/median_ms", nullptr, true},
        {"tflops", "/tflops", nullptr, true},
        {"speedup_vs_dense", "/speedup_vs_dense", nullptr, true},
        {"ideal_speedup", "/ideal_speedup", nullptr, true},
        {"peak_memory_bytes", "/peak_memory_bytes", nullptr, true},
        {"max_abs_err", "/max_abs_err", nullptr, true},
        {"ratio", "/ratio", nullptr, true},
        {"outcome", "/outcome"},
    };
    return c;
}

const json* find(const json& record, const char* pointer) {
    const json::json_pointer p(pointer);
    return record.contains(p) ? &record.at(p) : nullptr;
}

std::vector<std::vector<std::string>> rows_with(const json& report, const char* float_fmt) {
    std::vector<std::vector<std::string>> rows;
    for (const json& r : report.value("records", json::array())) {
        std::vector<std::string> row;
        for (const Column& c : columns()) {
            const json* v = r.is_object() ? find(r, c.pointer) : nullptr;
            if (!v && c.fallback && r.is_object()) v = find(r, c.fallback);
            row.push_back(cell_text(v, float_fmt));
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

std::string md_cell(const std::string& s) {
    std::string out;
    for (char ch : s) {
        if (ch == '|')
            out += "\\|";
        else if (ch == '\n' || ch == '\r')
            out += ' ';
        else
            out += ch;
    }
    return out;
}

}  // namespace

const std::vector<std::string>& export_columns() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> n;
        for (const Column& c : columns()) n.emplace_back(c.name);
        return n;
    }();
    return names;
}

std::vector<std::vector<std::string>> export_rows(const json& report) {
    return rows_with(report, "{}");
}

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string out = "\"";
    for (char ch : text) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + '"';
}

std::string export_csv(const json& report) {
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
        for (std::size_t k = 0; k < cells.size(); ++k)
            out += fmt::format("{}{}", k ? "," : "", csv_field(cells[k]));
        out += "\r\n";
    };
    line(export_columns());
    for (const auto& row : export_rows(report)) line(row);
    return out;
}

std::string export_markdown(const json& report) {
    std::string header = "|", rule = "|";
    for (const Column& c : columns()) {
        header += fmt::format(" {} |", c.name);
        rule += c.numeric ? " ---: |" : " --- |";
    }
    std::string out = header + '\n' + rule + '\n';
    for (const auto& row : rows_with(report, "{:.4g}")) {
        out += '|';
        for (const auto& cell : row) out += fmt::format(" {} |", md_cell(cell));
        out += '\n';
    }
    return out;
}

}  // namespace moba
