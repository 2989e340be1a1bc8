// Files the tool reads at run time (the report schema, the dashboard's web assets): installed
// beside the binary in <prefix>/share/moba/ (cmake/MobaInstall.cmake), else in the source tree
// the binary was built from, so a moved or installed tree finds its own copy.
#pragma once

#include <string>

namespace moba::cli {

// <dir of the binary>/../share/moba/<name> when <that>/<probe> exists, else `source_tree_path`
// when <it>/<probe> exists (probe "" : the path itself). Throws std::runtime_error naming every
// place tried and `flag`, the option that gives the path instead.
std::string installed_or_source_file(const std::string& name, const std::string& source_tree_path,
                                     const std::string& probe, const std::string& flag);

}  // namespace moba::cli
