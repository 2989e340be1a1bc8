#include "harness/cli/validate_command.hpp"

#include "harness/cli/installed_files.hpp"

#include <exception>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/schema.hpp"

namespace moba::cli {

CLI::App* add_validate_command(CLI::App& app, ValidateFlags& f) {
    CLI::App* cmd = app.add_subcommand("validate", "Check report files against the report JSON Schema");
    cmd->add_option("reports", f.reports, "moba-report JSON files")->required();
    cmd->add_option("--schema", f.schema,
                    "JSON Schema file (default: share/moba/moba-report.schema.json beside an installed "
                    "binary, else the source tree's reports/moba-report.schema.json)");
    return cmd;
}

std::string schema_path(const std::string& given) {
    if (!given.empty()) return given;
    return installed_or_source_file("moba-report.schema.json", MOBA_DEFAULT_SCHEMA, "", "--schema FILE");
}

int run_validate(const ValidateFlags& f) {
    std::optional<SchemaValidator> validator;
    try {
        const std::string schema = schema_path(f.schema);
        validator.emplace(SchemaValidator::from_file(schema));
        fmt::print("schema: {}\n", schema);
    } catch (const std::exception& e) {
        fmt::print(stderr, "moba validate: error: {}\n", e.what());
        return 2;
    }
    int status = 0;
    for (const auto& path : f.reports) {
        nlohmann::json doc;
        try {
            std::ifstream in(path);
            if (!in) throw std::runtime_error("cannot open the file");
            doc = nlohmann::json::parse(in);
        } catch (const std::exception& e) {
            fmt::print(stderr, "{}: error: {}\n", path, e.what());
            status = 2;
            continue;
        }
        const auto errors = validator->validate(doc);
        if (errors.empty()) {
            fmt::print("{}: valid ({} records)\n", path, doc.contains("records") ? doc["records"].size() : 0);
            continue;
        }
        if (status == 0) status = 1;
        fmt::print("{}: {} violations\n", path, errors.size());
        for (std::size_t i = 0; i < errors.size() && i < 20; ++i) fmt::print("  {}\n", errors[i]);
    }
    return status;
}

}  // namespace moba::cli
