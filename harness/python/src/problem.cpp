// Problem and the registry as Python sees them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/problem.hpp"
#include "harness/python/src/bindings.hpp"
#include "harness/registry.hpp"

namespace py = pybind11;

namespace moba::python {

void bind_problem(py::module_& m) {
    py::class_<Problem>(m, "Problem", "The shape of one MoBA problem (core/problem.hpp)")
        .def(py::init([](std::vector<int> seqlens, int heads_q, int heads_kv, int head_dim, int block, int topk,
                         const std::string& dtype, double scale) {
                 Problem p;
                 p.seqlens = std::move(seqlens);
                 p.heads_q = heads_q;
                 p.heads_kv = heads_kv;
                 p.head_dim = head_dim;
                 p.block = block;
                 p.topk = topk;
                 p.dtype = parse_dtype(dtype);
                 p.softmax_scale = scale;
                 p.validate();  // std::invalid_argument -> ValueError naming the bad value
                 return p;
             }),
             py::arg("seqlens"), py::arg("heads_q"), py::arg("heads_kv"), py::arg("head_dim"), py::arg("block"),
             py::arg("topk"), py::arg("dtype"), py::arg("scale") = 0.0)
        .def_readonly("seqlens", &Problem::seqlens)
        .def_readonly("heads_q", &Problem::heads_q)
        .def_readonly("heads_kv", &Problem::heads_kv)
        .def_readonly("head_dim", &Problem::head_dim)
        .def_readonly("block", &Problem::block)
        .def_readonly("topk", &Problem::topk)
        .def_property_readonly("dtype", [](const Problem& p) { return std::string(to_string(p.dtype)); })
        .def_property_readonly("scale", &Problem::scale)
        .def_property_readonly("total_tokens", &Problem::total_tokens)
        .def_property_readonly("sel_slots", &Problem::sel_slots)
        .def_property_readonly("max_blocks", &Problem::max_blocks)
        .def("flags", &Problem::flags)
        .def("__repr__", [](const Problem& p) { return "Problem(" + p.flags() + ")"; });
}

void bind_registry(py::module_& m) {
    m.def(
        "implementations",
        [] {
            py::list out;
            for (const Implementation& impl : registry()) {
                py::list dtypes;
                for (DType d : impl.dtypes) dtypes.append(std::string(to_string(d)));
                py::dict e;
                e["name"] = impl.name;
                e["technique"] = impl.technique;
                e["dtypes"] = dtypes;
                e["head_dims"] = impl.head_dims.describe();
                e["dense"] = impl.dense;
                e["has_gating"] = impl.has_gating();
                e["has_backward"] = impl.has_backward();
                e["has_forward"] = impl.has_forward();
                e["has_decode"] = impl.has_decode();
                e["external"] = impl.external;
                e["writes_lse"] = impl.writes_lse;
                const CommandNaming naming = command_naming(impl.name);
                e["cli"] = naming.tool + " " + naming.impl_flags;  // how records' commands name it
                e["block_means"] = std::string(to_string(impl.block_means));
                out.append(e);
            }
            return out;
        },
        "Every registry entry (built-in, then external) as a dict");
    m.def(
        "supports",
        [](const std::string& name, const Problem& p) -> py::tuple {
            const Implementation* impl = find_implementation(name);
            if (!impl)
                throw py::value_error("unknown implementation '" + name + "' (registered: " + implementation_names() +
                                      ")");
            const Support s = impl->supports(p);
            return py::make_tuple(s.ok, s.reason);
        },
        py::arg("name"), py::arg("problem"), "(ok, reason): whether the entry implements that problem");
}

}  // namespace moba::python
