// moba: the command line of the MoBA correctness and benchmarking harness.
#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

#include "harness/cli/app.hpp"

int main(int argc, char** argv) {
    // Redirected to a file or a pipe, progress lines still arrive as they are printed.
    if (!isatty(fileno(stdout))) std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (!isatty(fileno(stderr))) std::setvbuf(stderr, nullptr, _IOLBF, 0);
    return moba::cli::run_main(std::vector<std::string>(argv, argv + argc));
}
