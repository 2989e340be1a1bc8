#include "harness/report.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <unistd.h>

#include "harness/version.hpp"
#include "kernels/moba/head_passes.hpp"  // kAccumulatorBudgetEnv
#include "kernels/wgmma/wgmma.hpp"       // kAtomicDqEnv

namespace moba {

std::string shell_join(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& arg : argv) {
        if (!out.empty()) out += ' ';
        const bool plain = !arg.empty() && arg.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,/:=+@%") == std::string::npos;
        if (plain) {
            out += arg;
        } else {
            out += '\'';
            for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
            out += '\'';
        }
    }
    return out;
}

std::string iso_time_now() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

nlohmann::json device_json(const DeviceInfo& d) {
    if (!d.present) return {{"present", false}, {"name", "no GPU"}, {"reason", d.reason}};
    return {{"present", true},
            {"name", d.name},
            {"ordinal", d.ordinal},
            {"compute_capability", fmt::format("{}.{}", d.cc_major, d.cc_minor)},
            {"sms", d.sms},
            {"memory_bytes", d.memory_bytes},
            {"sm_clock_mhz", d.sm_clock_mhz},
            {"memory_clock_mhz", d.memory_clock_mhz},
            {"driver_version", d.driver_version},
            {"runtime_version", d.runtime_version}};
}

namespace {
std::vector<std::string>& invocation_override() {
    static std::vector<std::string> argv;
    return argv;
}
}  // namespace

void set_invocation_override(std::vector<std::string> argv) { invocation_override() = std::move(argv); }

namespace {
// The set kernel-affecting variables, name -> value.
std::vector<std::pair<std::string, std::string>> kernel_env() {
    std::vector<std::pair<std::string, std::string>> set;
    for (const char* name : {sparse::kAccumulatorBudgetEnv, wgmma::kAtomicDqEnv, wgmma::kMobaAtomicDqEnv}) {
        const char* value = std::getenv(name);
        if (value != nullptr && *value != '\0') set.emplace_back(name, value);
    }
    return set;
}
}  // namespace

std::string kernel_env_prefix() {
    std::string prefix;
    for (const auto& [name, value] : kernel_env()) prefix += shell_join({name + "=" + value}) + " ";
    return prefix;
}

nlohmann::json meta_json(const std::string& tool, const std::vector<std::string>& argv) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    nlohmann::json env = nlohmann::json::object();
    for (const auto& [name, value] : kernel_env()) env[name] = value;
    return {{"tool", tool},
            {"argv", argv},
            {"command", kernel_env_prefix() + shell_join(invocation_override().empty() ? argv : invocation_override())},
            {"kernel_env", env},
            {"git_sha", git_sha()},
            {"git_dirty", git_dirty()},
            {"version", project_version()},
            {"host", host},
            {"started", iso_time_now()}};
}

ReportWriter::ReportWriter(std::filesystem::path path, const std::string& tool,
                           const std::vector<std::string>& argv)
    : path_(std::move(path)) {
    doc_ = {{"format", kReportFormat},
            {"format_version", kReportFormatVersion},
            {"complete", false},
            {"meta", meta_json(tool, argv)},
            {"device", device_json(device_info())},
            {"records", nlohmann::json::array()},
            {"summary", outcome_summary(nlohmann::json::array())}};
    if (!path_.empty()) write();  // fail early on an unwritable path, before any work
}

void ReportWriter::add(nlohmann::json record) { doc_["records"].push_back(std::move(record)); }

void ReportWriter::replace_from(std::size_t kept, std::vector<nlohmann::json> records) {
    auto& all = doc_["records"];
    if (kept > all.size())
        throw std::logic_error(fmt::format("ReportWriter::replace_from({}) past the {} records", kept, all.size()));
    all.erase(all.begin() + static_cast<std::ptrdiff_t>(kept), all.end());
    for (auto& r : records) all.push_back(std::move(r));
}

void ReportWriter::flush() {
    doc_["summary"] = outcome_summary(doc_["records"]);
    if (!path_.empty()) write();
}

void ReportWriter::finish() {
    doc_["complete"] = true;
    doc_["meta"]["finished"] = iso_time_now();
    flush();
}

void ReportWriter::write() {
    if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
    const std::filesystem::path tmp = path_.string() + ".partial";
    {
        std::ofstream out(tmp);
        if (!out) throw std::runtime_error(fmt::format("cannot write report '{}'", tmp.string()));
        out << doc_.dump(1) << '\n';
        if (!out) throw std::runtime_error(fmt::format("writing report '{}' failed", tmp.string()));
    }
    std::filesystem::rename(tmp, path_);
}

nlohmann::json outcome_summary(const nlohmann::json& records) {
    nlohmann::json s = {{"records", records.size()}};
    for (Outcome o : {Outcome::passed, Outcome::incorrect, Outcome::failed, Outcome::not_supported,
                      Outcome::skipped})
        s[std::string(to_string(o))] = 0;
    for (const auto& r : records)
        if (r.contains("outcome")) s[r["outcome"].get<std::string>()] = s[r["outcome"].get<std::string>()].get<int>() + 1;
    return s;
}

}  // namespace moba
