#include "harness/cli/validate_command.hpp"

#include <exception>
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
    cmd->add_option("--schema", f.schema, "JSON Schema file")->capture_default_str();
    return cmd;
}

int run_validate(const ValidateFlags& f) {
    std::optional<SchemaValidator> validator;
    try {
        validator.emplace(SchemaValidator::from_file(f.schema));
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
