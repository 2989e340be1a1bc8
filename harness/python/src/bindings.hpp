// The parts of the _moba module, one file each (module.cpp puts them together).
#pragma once

#include <pybind11/pybind11.h>

namespace moba::python {

void bind_problem(pybind11::module_& m);           // problem.cpp: Problem, dtype names
void bind_registry(pybind11::module_& m);          // problem.cpp: implementations(), supports()
void bind_kernel_calls(pybind11::module_& m);      // kernel_calls.cpp: gating/forward/backward
void bind_external_entries(pybind11::module_& m);  // external_entries.cpp: register_external
void bind_cli(pybind11::module_& m);               // cli.cpp: run_main, device_present
void bind_dlpack_views(pybind11::module_& m);      // dlpack_views.cpp: zero-copy views for torch

}  // namespace moba::python
