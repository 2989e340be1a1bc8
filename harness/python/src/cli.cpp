// The `moba` command line inside the Python process (harness/cli/app.hpp), with the GIL
// released so the external entries' callbacks can take it.
#include <cstdio>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "harness/cli/app.hpp"
#include "harness/device.hpp"
#include "harness/report.hpp"
#include "harness/python/src/bindings.hpp"

namespace py = pybind11;

namespace moba::python {

void bind_cli(py::module_& m) {
    m.def(
        "run_main",
        [](const std::vector<std::string>& args) {
            int status = 0;
            {
                py::gil_scoped_release no_gil;
                status = cli::run_main(args);
                // The C++ side prints through stdio; flush before Python prints again.
                std::fflush(stdout);
                std::fflush(stderr);
            }
            return status;
        },
        py::arg("args"), "Runs `moba ARGS...` (args[0] is the program name); returns the exit status");
    m.def(
        "set_invocation", [](const std::vector<std::string>& argv) { set_invocation_override(argv); },
        py::arg("argv"), "The command line reports name in meta.command (empty: the argv run_main parses)");
    m.def(
        "device_present", [] { return device_info().present; }, "Whether the harness sees a CUDA GPU");
    m.def(
        "device_reason", [] { return device_info().reason; }, "Why no GPU is seen (empty with one)");
}

}  // namespace moba::python
