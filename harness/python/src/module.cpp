// _moba: the harness seen from Python. Three things, no PyTorch C++ API (so it builds against
// Debian's old torch as well as a new one):
//   - the registry (list, supports) and the Problem shape;
//   - the registered kernels called on raw device pointers (ints from tensor.data_ptr()) on a
//     given cudaStream_t (kernel_calls.cpp), which the torch custom op of moba/ops.py wraps;
//   - external entries whose gating/forward/backward call back into Python
//     (external_entries.cpp), and the `moba` command line itself (run_main), so check, bench
//     and paper judge and time Python callables by the very rules and truths of the CLI.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "harness/python/src/bindings.hpp"

PYBIND11_MODULE(_moba, m) {
    m.doc() = "MoBA harness: registry, kernels on device pointers, external entries, the moba CLI";
    moba::python::bind_problem(m);
    moba::python::bind_registry(m);
    moba::python::bind_kernel_calls(m);
    moba::python::bind_external_entries(m);
    moba::python::bind_cli(m);
    moba::python::bind_dlpack_views(m);
}
