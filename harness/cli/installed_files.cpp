#include "harness/cli/installed_files.hpp"

#include <filesystem>
#include <stdexcept>
#include <vector>

namespace moba::cli {

std::string installed_or_source_file(const std::string& name, const std::string& source_tree_path,
                                     const std::string& probe, const std::string& flag) {
    namespace fs = std::filesystem;
    std::vector<fs::path> tried;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) tried.push_back(self.parent_path().parent_path() / "share" / "moba" / name);
    tried.emplace_back(source_tree_path);
    for (const fs::path& p : tried)
        if (fs::exists(probe.empty() ? p : p / probe, ec)) return p.string();
    std::string list;
    for (const fs::path& p : tried) list += (list.empty() ? "" : ", ") + p.string();
    throw std::runtime_error("no " + name + " found (tried " + list + "); pass " + flag);
}

}  // namespace moba::cli
