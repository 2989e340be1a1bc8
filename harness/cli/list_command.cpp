// `moba list`: the registry rendered as aligned text, the README's markdown table, or JSON.
#include "harness/cli/list_command.hpp"

#include <algorithm>
#include <cstddef>
#include <string_view>

#include <fmt/format.h>

namespace moba::cli {
namespace {

std::string dtype_list(const Implementation& impl) {
    std::string text;
    for (const DType dtype : impl.dtypes)
        text += (text.empty() ? "" : ", ") + std::string(to_string(dtype));
    return text;
}

std::string_view yes_no(bool value) { return value ? "yes" : "no"; }

// The cells of one row, in the order of kColumns.
std::vector<std::string> row_cells(const Implementation& impl) {
    return {impl.name,
            dtype_list(impl),
            impl.head_dims.describe(),
            std::string(yes_no(impl.has_backward())),
            // A decode step gates itself unless it is dense ("own gating" is prefill's).
            !impl.has_decode() ? std::string("no") : impl.dense ? std::string("yes (dense)") : std::string("yes (gates)"),
            std::string(yes_no(impl.has_gating())),
            std::string(yes_no(impl.dense)),
            impl.technique};
}

const std::vector<std::string> kColumns = {"name",       "dtypes", "head dims", "backward", "decode",
                                           "own gating", "dense",  "technique"};

// Display width in code points: head dims say "≤", which is three bytes of UTF-8.
std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
}

std::string padded(const std::string& text, std::size_t width) {
    return text + std::string(width - std::min(width, display_width(text)), ' ');
}

// A literal "|" would end a markdown cell early.
std::string markdown_cell(const std::string& text) {
    std::string cell;
    for (const char c : text) {
        if (c == '|') cell += '\\';
        cell += c;
    }
    return cell;
}

}  // namespace

std::string implementation_table_text(const std::vector<Implementation>& entries) {
    std::vector<std::vector<std::string>> rows = {kColumns};
    for (const auto& impl : entries) rows.push_back(row_cells(impl));
    // Every column but the last (the long technique) is padded to its widest cell.
    std::vector<std::size_t> widths(kColumns.size(), 0);
    for (const auto& row : rows)
        for (std::size_t c = 0; c + 1 < row.size(); ++c)
            widths[c] = std::max(widths[c], display_width(row[c]));
    std::string text;
    for (const auto& row : rows) {
        for (std::size_t c = 0; c + 1 < row.size(); ++c) text += padded(row[c], widths[c]) + "  ";
        text += row.back() + "\n";
    }
    return text;
}

std::string implementation_table_markdown(const std::vector<Implementation>& entries) {
    std::string text = "|";
    for (const auto& column : kColumns) text += " " + column + " |";
    text += "\n|";
    for (std::size_t c = 0; c < kColumns.size(); ++c) text += "---|";
    text += "\n";
    for (const auto& impl : entries) {
        std::vector<std::string> cells = row_cells(impl);
        cells[0] = "`" + cells[0] + "`";
        text += "|";
        for (const auto& cell : cells) text += " " + markdown_cell(cell) + " |";
        text += "\n";
    }
    return text;
}

nlohmann::json implementation_table_json(const std::vector<Implementation>& entries) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& impl : entries) {
        nlohmann::json dtypes = nlohmann::json::array();
        for (const DType dtype : impl.dtypes) dtypes.push_back(std::string(to_string(dtype)));
        nlohmann::json head_dims = {{"description", impl.head_dims.describe()}};
        if (impl.head_dims.listed.empty()) {
            head_dims["max"] = impl.head_dims.max;
            head_dims["multiple_of"] = impl.head_dims.multiple_of;
        } else {
            head_dims["listed"] = impl.head_dims.listed;
        }
        list.push_back({{"name", impl.name},
                        {"technique", impl.technique},
                        {"dtypes", dtypes},
                        {"head_dims", head_dims},
                        {"forward", impl.has_forward()},
                        {"backward", impl.has_backward()},
                        {"decode", impl.has_decode()},
                        {"own_gating", impl.has_gating()},
                        {"dense", impl.dense}});
    }
    return list;
}

CLI::App* add_list_command(CLI::App& app, ListFlags& f) {
    CLI::App* cmd =
        app.add_subcommand("list", "List the registered implementations (no GPU needed)");
    CLI::Option* markdown =
        cmd->add_flag("--markdown", f.markdown, "print the README's markdown table");
    cmd->add_flag("--json", f.json, "print a JSON array, one object per implementation")
        ->excludes(markdown);
    return cmd;
}

int run_list(const ListFlags& f) {
    if (f.json)
        fmt::print("{}\n", implementation_table_json(registry()).dump(2));
    else if (f.markdown)
        fmt::print("{}", implementation_table_markdown(registry()));
    else
        fmt::print("{}", implementation_table_text(registry()));
    return 0;
}

}  // namespace moba::cli
