// `moba list [--markdown | --json]`: the implementation registry, one row per entry (name,
// technique, dtypes, head dims, backward, own gating, dense). Needs no GPU; exit status 0.
// The README's implementation table is implementation_table_markdown(registry()) verbatim, and
// test_readme fails when the two differ, so the README cannot drift from the registry.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "harness/registry.hpp"

namespace moba::cli {

struct ListFlags {
    bool markdown = false;
    bool json = false;
};

CLI::App* add_list_command(CLI::App& app, ListFlags& flags);
int run_list(const ListFlags& flags);

// The three renderings of `moba list`; each ends with a newline.
std::string implementation_table_text(const std::vector<Implementation>& entries);
std::string implementation_table_markdown(const std::vector<Implementation>& entries);
nlohmann::json implementation_table_json(const std::vector<Implementation>& entries);

}  // namespace moba::cli
