// The registered kernels on raw device pointers: what moba/ops.py's torch custom op calls with
// tensor.data_ptr() values and torch's current stream. Layouts are core/tensors.hpp's (the
// Python side checks shapes, dtypes and contiguity before calling); nothing here allocates.
// The GIL is released while a kernel is launched.
#include <cstdint>

#include <pybind11/pybind11.h>

#include "harness/python/src/bindings.hpp"
#include "harness/registry.hpp"

namespace py = pybind11;

namespace moba::python {
namespace {

using Ptr = std::uintptr_t;

template <typename T>
T* as(Ptr p) {
    return reinterpret_cast<T*>(p);
}

const Implementation& entry(const std::string& name, const Problem& p) {
    const Implementation* impl = find_implementation(name);
    if (!impl)
        throw py::value_error("unknown implementation '" + name + "' (registered: " + implementation_names() + ")");
    if (impl->external)
        throw py::value_error("'" + name + "' is an external (Python) entry: call the Python function itself");
    if (!impl->has_forward()) throw py::value_error(decode_only_reason(*impl));
    if (const Support s = impl->supports(p); !s.ok) throw py::value_error(s.reason);
    return *impl;
}

std::size_t gating_workspace(const std::string& name, const Problem& p) {
    const Implementation& impl = entry(name, p);
    return impl.gating_workspace_bytes ? impl.gating_workspace_bytes(p) : 0;
}

std::size_t attention_workspace(const std::string& name, const Problem& p) {
    const Implementation& impl = entry(name, p);
    return impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0;
}

void gating(const std::string& name, const Problem& p, Ptr cu_seqlens, Ptr q, Ptr k, Ptr sel, Ptr workspace,
            Ptr stream) {
    const Implementation& impl = entry(name, p);
    if (!impl.has_gating()) throw py::value_error("'" + name + "' has no gating of its own");
    const GatingArgs args{p, as<const std::int32_t>(cu_seqlens), as<const void>(q), as<const void>(k),
                          as<std::int32_t>(sel), as<void>(workspace), as<CUstream_st>(stream)};
    py::gil_scoped_release no_gil;
    impl.gating(args);
}

AttentionArgs attention_args(const Problem& p, Ptr cu_seqlens, Ptr q, Ptr k, Ptr v, Ptr sel, Ptr out, Ptr lse,
                             Ptr workspace, Ptr stream) {
    AttentionArgs a{};
    a.problem = p;
    a.cu_seqlens = as<const std::int32_t>(cu_seqlens);
    a.q = as<const void>(q);
    a.k = as<const void>(k);
    a.v = as<const void>(v);
    a.sel = as<const std::int32_t>(sel);
    a.out = as<void>(out);
    a.lse = as<float>(lse);
    a.workspace = as<void>(workspace);
    a.stream = as<CUstream_st>(stream);
    return a;
}

void forward(const std::string& name, const Problem& p, Ptr cu_seqlens, Ptr q, Ptr k, Ptr v, Ptr sel, Ptr out,
             Ptr lse, Ptr workspace, Ptr stream) {
    const Implementation& impl = entry(name, p);
    const AttentionArgs args = attention_args(p, cu_seqlens, q, k, v, sel, out, lse, workspace, stream);
    py::gil_scoped_release no_gil;
    impl.forward(args);
}

void backward(const std::string& name, const Problem& p, Ptr cu_seqlens, Ptr q, Ptr k, Ptr v, Ptr sel, Ptr out,
              Ptr lse, Ptr dout, Ptr dq, Ptr dk, Ptr dv, Ptr workspace, Ptr stream) {
    const Implementation& impl = entry(name, p);
    if (!impl.has_backward()) throw py::value_error("'" + name + "' has no backward (forward only)");
    AttentionArgs args = attention_args(p, cu_seqlens, q, k, v, sel, out, lse, workspace, stream);
    args.dout = as<const void>(dout);
    args.dq = as<void>(dq);
    args.dk = as<void>(dk);
    args.dv = as<void>(dv);
    py::gil_scoped_release no_gil;
    impl.backward(args);
}

}  // namespace

void bind_kernel_calls(py::module_& m) {
    m.def("gating_workspace_bytes", &gating_workspace, py::arg("impl"), py::arg("problem"));
    m.def("attention_workspace_bytes", &attention_workspace, py::arg("impl"), py::arg("problem"),
          "Workspace of forward and backward (one buffer serves both)");
    m.def("gating", &gating, py::arg("impl"), py::arg("problem"), py::arg("cu_seqlens"), py::arg("q"), py::arg("k"),
          py::arg("sel"), py::arg("workspace"), py::arg("stream"),
          "Writes sel [total, Hq, sel_slots] (int32, ascending, -1 pad); pointers as ints");
    m.def("forward", &forward, py::arg("impl"), py::arg("problem"), py::arg("cu_seqlens"), py::arg("q"), py::arg("k"),
          py::arg("v"), py::arg("sel"), py::arg("out"), py::arg("lse"), py::arg("workspace"), py::arg("stream"),
          "Writes out [total, Hq, D] and lse [Hq, total] (fp32)");
    m.def("backward", &backward, py::arg("impl"), py::arg("problem"), py::arg("cu_seqlens"), py::arg("q"),
          py::arg("k"), py::arg("v"), py::arg("sel"), py::arg("out"), py::arg("lse"), py::arg("dout"), py::arg("dq"),
          py::arg("dk"), py::arg("dv"), py::arg("workspace"), py::arg("stream"), "Writes dq, dk, dv");
}

}  // namespace moba::python
