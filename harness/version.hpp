// Build provenance, recorded at build time by cmake/WriteGitVersion.cmake.
#pragma once

namespace moba {
const char* git_sha();
bool git_dirty();
const char* project_version();
}  // namespace moba
