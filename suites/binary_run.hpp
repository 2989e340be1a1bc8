// How the CLI tests run a built binary (the `moba` tool) and read what it printed.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace moba::test {

// A scratch file of this process: two test runs at once (two worktrees on one machine) must not
// read each other's output.
inline std::filesystem::path scratch(const std::string& name) {
    return std::filesystem::temp_directory_path() / (std::to_string(::getpid()) + "_" + name);
}

struct BinaryRun {
    int status;  // the exit status; -1 when it did not exit (a signal)
    std::string output;  // stdout and stderr together
};

// `binary args`, its output kept in the scratch file `log_name`.
inline BinaryRun run_binary(const std::string& binary, const std::string& args, const std::string& log_name) {
    const std::filesystem::path log = scratch(log_name);
    const int raw = std::system((binary + " " + args + " > " + log.string() + " 2>&1").c_str());
    std::ifstream in(log);
    std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, std::move(output)};
}

}  // namespace moba::test
