// The `moba` command line as a function, so the executable (main.cpp) and the Python package
// (harness/python/, `python -m moba check|bench|paper`) run the very same parsing and commands.
#pragma once

#include <string>
#include <vector>

namespace moba::cli {

// args[0] is the program name. Returns the exit status: 0, 1 (a check incorrect or failed, a
// run failed), 2 (bad usage or a refusal, message on stderr), 130/143 (interrupted).
int run_main(const std::vector<std::string>& args);

}  // namespace moba::cli
