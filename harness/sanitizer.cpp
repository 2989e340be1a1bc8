#include "harness/sanitizer.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <sys/wait.h>

namespace moba {

std::string_view to_string(SanitizerTool tool) {
    switch (tool) {
        case SanitizerTool::memcheck: return "memcheck";
        case SanitizerTool::racecheck: return "racecheck";
        case SanitizerTool::synccheck: return "synccheck";
        case SanitizerTool::initcheck: return "initcheck";
    }
    return "unknown";
}

SanitizerTool parse_sanitizer_tool(std::string_view text) {
    for (SanitizerTool t : {SanitizerTool::memcheck, SanitizerTool::racecheck,
                            SanitizerTool::synccheck, SanitizerTool::initcheck})
        if (text == to_string(t)) return t;
    throw std::invalid_argument(fmt::format(
        "unknown sanitizer tool '{}' (expected memcheck, racecheck, synccheck, initcheck or all)",
        text));
}

std::int64_t parse_sanitizer_summary(SanitizerTool tool, std::string_view output,
                                     std::string* line) {
    // memcheck, synccheck and initcheck end with "ERROR SUMMARY: N error(s)"; racecheck with
    // "RACECHECK SUMMARY: N hazard(s) displayed (E errors, W warnings)".
    static const std::regex errors(R"(ERROR SUMMARY: (\d+) error)");
    static const std::regex hazards(R"(RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\))");
    const std::string text(output);
    std::smatch m;
    if (tool == SanitizerTool::racecheck && std::regex_search(text, m, hazards)) {
        if (line) *line = m.str(0);
        return std::stoll(m.str(2)) + std::stoll(m.str(3));
    }
    if (std::regex_search(text, m, errors)) {
        if (line) *line = m.str(0);
        return std::stoll(m.str(1));
    }
    return -1;
}

std::vector<std::string> sanitizer_findings(std::string_view output, std::size_t max_findings,
                                            std::size_t max_lines) {
    static constexpr std::string_view kPrefix = "=========";
    std::vector<std::string> findings;
    std::string current;
    std::size_t lines = 0;
    bool in_backtrace = false;  // "Saved host backtrace ..." and its frames until the next report
    const auto close = [&] {
        if (!current.empty() && findings.size() < max_findings) findings.push_back(current);
        current.clear();
        lines = 0;
    };
    std::size_t pos = 0;
    while (pos < output.size()) {
        std::size_t end = output.find('\n', pos);
        if (end == std::string_view::npos) end = output.size();
        std::string_view line = output.substr(pos, end - pos);
        pos = end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.starts_with(kPrefix)) continue;  // the checked program's own output
        line.remove_prefix(kPrefix.size());
        const bool indented = line.starts_with("  ");  // a report's own lines; its header has one space
        const std::size_t first = line.find_first_not_of(' ');
        if (first == std::string_view::npos) {  // a bare prefix ends a report
            close();
            in_backtrace = false;
            continue;
        }
        const std::string_view text = line.substr(first);
        if (!indented) {
            close();
            in_backtrace = false;
            if (text.starts_with("COMPUTE-SANITIZER") || text.find("SUMMARY:") != std::string_view::npos) continue;
            current = std::string(text);
            lines = 1;
            continue;
        }
        if (current.empty()) continue;
        if (text.starts_with("Saved host backtrace") || text.starts_with("Host Frame")) {
            in_backtrace = true;
            continue;
        }
        if (in_backtrace || lines >= max_lines) continue;
        current += '\n';
        current += text;
        ++lines;
    }
    close();
    return findings;
}

namespace {

// Single-quotes an argument for /bin/sh.
std::string quote(const std::string& arg) {
    std::string q = "'";
    for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

}  // namespace

SanitizerRun run_under_sanitizer(SanitizerTool tool, const std::string& sanitizer,
                                 const std::string& self_exe,
                                 const std::vector<std::string>& check_args) {
    SanitizerRun run;
    run.tool = tool;
    // MOBA_NO_GUARDS=1: the outputs at their exact size, so the tool sees every access past them
    // (harness/guarded_buffer.hpp).
    std::string command = fmt::format("MOBA_NO_GUARDS=1 {} --tool {} --error-exitcode 3 {} check", quote(sanitizer),
                                      to_string(tool), quote(self_exe));
    for (const auto& a : check_args) command += " " + quote(a);
    run.command = command;
    FILE* pipe = popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) {
        run.outcome = Outcome::failed;
        run.summary = "could not start compute-sanitizer";
        return run;
    }
    std::string output;
    std::array<char, 4096> buffer{};
    while (std::fgets(buffer.data(), static_cast<int>(buffer.size()), pipe) != nullptr)
        output += buffer.data();
    const int status = pclose(pipe);
    run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::string line;
    run.problems = parse_sanitizer_summary(tool, output, &line);
    run.findings = sanitizer_findings(output);
    if (run.problems < 0) {
        run.outcome = Outcome::failed;
        std::string tail = output.size() > 400 ? output.substr(output.size() - 400) : output;
        run.summary = fmt::format("no {} summary (exit {}): {}", to_string(tool), run.exit_status, tail);
    } else if (run.problems > 0) {
        run.outcome = Outcome::incorrect;
        run.summary = line;
        if (!run.findings.empty()) {  // where, on one line: the first report
            std::string first = run.findings.front();
            for (char& c : first)
                if (c == '\n') c = ' ';
            run.summary += "; first: " + first;
        }
    } else if (run.exit_status == 1) {
        // No hazard, but the check run under the tool found wrong numbers: still a failing
        // record (its own report is scratch), so a sanitized run can never pass a wrong kernel.
        run.outcome = Outcome::incorrect;
        run.summary = fmt::format("{}; the check itself was incorrect (rerun without --sanitize "
                                  "for its records)", line);
    } else if (run.exit_status != 0) {
        // A crash or a refused configuration.
        run.outcome = Outcome::failed;
        run.summary = fmt::format("{}; the checked program exited {}", line, run.exit_status);
    } else {
        run.summary = line;
    }
    return run;
}

std::string find_compute_sanitizer() {
    if (const char* env = std::getenv("MOBA_COMPUTE_SANITIZER"); env && *env) return env;
    if (const char* path = std::getenv("PATH")) {
        std::stringstream dirs(path);
        std::string dir;
        while (std::getline(dirs, dir, ':')) {
            const auto candidate = std::filesystem::path(dir) / "compute-sanitizer";
            if (!dir.empty() && std::filesystem::exists(candidate)) return candidate.string();
        }
    }
    const std::filesystem::path fallback = "/usr/local/cuda/bin/compute-sanitizer";
    return std::filesystem::exists(fallback) ? fallback.string() : std::string();
}

std::string self_executable() {
    std::error_code ec;
    const auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : path.string();
}

}  // namespace moba
