#include "harness/dashboard_inputs.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <system_error>

#include "harness/report_io.hpp"

namespace moba {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Inside a folder: JSON files other than JSON Schemas (reports/ holds the report schema beside
// the reports). A file named on the command line is always read, and judged.
bool looks_like_report(const fs::path& p) {
    const std::string name = p.filename().string();
    if (ends_with(name, ".schema.json")) return false;
    return ends_with(name, ".json") || ends_with(name, ".json.gz");
}

}  // namespace

bool DashboardInputs::any_invalid() const {
    return std::any_of(problems.begin(), problems.end(),
                       [](const DashboardProblem& p) { return p.kind == "invalid"; });
}

std::vector<fs::path> report_files(const std::vector<std::string>& inputs) {
    std::vector<fs::path> files;
    for (const std::string& input : inputs) {
        std::error_code ec;
        const fs::path path(input);
        if (!fs::exists(path, ec))
            throw std::invalid_argument(fmt::format("{}: no such file or folder", input));
        if (!fs::is_directory(path, ec)) {
            files.push_back(path);
            continue;
        }
        std::vector<fs::path> found;
        for (const auto& entry : fs::recursive_directory_iterator(path))
            if (entry.is_regular_file() && looks_like_report(entry.path()))
                found.push_back(entry.path());
        std::sort(found.begin(), found.end());
        files.insert(files.end(), found.begin(), found.end());
    }
    return files;
}

DashboardInputs read_dashboard_inputs(const std::vector<fs::path>& files,
                                      const SchemaValidator& schema) {
    DashboardInputs in;
    for (const fs::path& file : files) {
        const std::string name = file.string();
        if (ends_with(name, ".gz")) {
            in.problems.push_back({name,
                                   "skipped",
                                   "gzip-compressed: this build does not read compressed reports "
                                   "(gunzip it and pass the .json)",
                                   {}});
            continue;
        }
        nlohmann::json doc;
        try {
            doc = load_report(file);
        } catch (const std::exception& e) {
            // load_report's message starts with the file's name; the page shows it beside it.
            std::string message = e.what();
            if (message.rfind(name + ": ", 0) == 0) message.erase(0, name.size() + 2);
            in.problems.push_back({name, "invalid", message, {}});
            continue;
        }
        std::vector<std::string> violations = schema.validate(doc);
        if (!violations.empty()) {
            const std::size_t count = violations.size();
            if (violations.size() > 20) violations.resize(20);
            in.problems.push_back(
                {name, "invalid",
                 fmt::format("{} schema violation{}", count, count == 1 ? "" : "s"),
                 std::move(violations)});
            continue;
        }
        in.reports.push_back({name, std::move(doc)});
    }
    return in;
}

}  // namespace moba
