// The project's report format ("moba-report", versioned; schema in reports/), shared by
// `moba check`, `moba bench` and sweeps:
//   { format, format_version, complete, meta{...}, device{...}, records[...], summary{...} }
// The file is rewritten atomically (temporary file + rename) after every flush, with
// "complete": false until finish(), so an interrupted run loses nothing already flushed and
// never leaves a file that looks complete.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/device.hpp"
#include "harness/outcome.hpp"

namespace moba {

inline constexpr const char* kReportFormat = "moba-report";
inline constexpr int kReportFormatVersion = 1;

// "moba check --seqlens 1,2" from argv, quoting what a shell would need quoted.
std::string shell_join(const std::vector<std::string>& argv);
std::string iso_time_now();

// "NAME=value " for each set environment variable that changes how the kernels run (the head
// passes' MOBA_ACCUMULATOR_BUDGET_MIB, kernels/moba/head_passes.hpp; wgmma_dense_atomic's
// MOBA_DENSE_ATOMIC_DQ and wgmma_moba_atomic's MOBA_MOBA_ATOMIC_DQ, kernels/wgmma/wgmma.hpp),
// "" when none is set: the
// prefix every reproduce command and meta's `command` carry, so a number's command line still
// reproduces it. meta also lists them as `kernel_env`.
std::string kernel_env_prefix();

nlohmann::json device_json(const DeviceInfo& info);
nlohmann::json meta_json(const std::string& tool, const std::vector<std::string>& argv);
// The command line that meta's `command` names, when it is not the argv the command parsed:
// `python -m moba` sets the one its user typed (its --impl items are module:function specs that
// the argv it hands the C++ side no longer carries). meta's `argv` stays what was parsed. An
// empty vector clears it.
void set_invocation_override(std::vector<std::string> argv);

class ReportWriter {
public:
    // An empty path keeps the report in memory only.
    ReportWriter(std::filesystem::path path, const std::string& tool,
                 const std::vector<std::string>& argv);

    void add(nlohmann::json record);
    // Keeps the first `kept` records and appends `records` after them: a run's interim records
    // (a bench state's implementations measured so far) replaced by later ones on each call.
    void replace_from(std::size_t kept, std::vector<nlohmann::json> records);
    std::size_t size() const { return doc_["records"].size(); }
    void flush();   // atomic rewrite with complete = false
    void finish();  // atomic rewrite with complete = true and the finish time

    const nlohmann::json& document() const { return doc_; }
    const std::filesystem::path& path() const { return path_; }

private:
    void write();
    std::filesystem::path path_;
    nlohmann::json doc_;
};

// Count of records per outcome: {"passed": n, "incorrect": n, ...}.
nlohmann::json outcome_summary(const nlohmann::json& records);

}  // namespace moba
