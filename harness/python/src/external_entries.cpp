// External registry entries whose gating, forward, backward and decode call Python (moba/bridge.py's
// dispatcher), so `moba check`, `moba bench` and `moba paper` run Python callables by the same
// code as the built-in kernels. The callbacks capture only the entry's name and find the
// Python side through one dispatcher set once: no Python object lives in the registry, which
// outlives the interpreter at exit.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "harness/python/src/bindings.hpp"
#include "harness/registry.hpp"

namespace py = pybind11;

namespace moba::python {
namespace {

// Never destroyed: the registry's callbacks may in principle run until exit.
py::object& dispatcher() {
    static auto* d = new py::object();
    return *d;
}

std::uintptr_t ptr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// Calls dispatcher(name, what, problem, pointers, stream) with the GIL held. A Python exception
// becomes a std::runtime_error with its text (built while the GIL is held), which the check and
// bench engines turn into a failed record with that reason.
void call_python(const std::string& name, const char* what, const Problem& p, const py::dict& pointers,
                 cudaStream_t stream) {
    try {
        if (!dispatcher()) throw std::runtime_error("no dispatcher set (import moba first)");
        dispatcher()(name, what, p, pointers, ptr(stream));
    } catch (py::error_already_set& e) {
        throw std::runtime_error(std::string(e.what()));
    }
}

std::function<void(const GatingArgs&)> gating_callback(const std::string& name) {
    return [name](const GatingArgs& a) {
        py::gil_scoped_acquire gil;
        py::dict d;
        d["cu_seqlens"] = ptr(a.cu_seqlens);
        d["q"] = ptr(a.q);
        d["k"] = ptr(a.k);
        d["sel"] = ptr(a.sel);
        call_python(name, "gating", a.problem, d, a.stream);
    };
}

py::dict attention_pointers(const AttentionArgs& a) {
    py::dict d;
    d["cu_seqlens"] = ptr(a.cu_seqlens);
    d["q"] = ptr(a.q);
    d["k"] = ptr(a.k);
    d["v"] = ptr(a.v);
    d["sel"] = ptr(a.sel);  // 0: none (a dense entry in `moba bench`)
    d["out"] = ptr(a.out);
    d["lse"] = ptr(a.lse);
    d["dout"] = ptr(a.dout);
    d["dq"] = ptr(a.dq);
    d["dk"] = ptr(a.dk);
    d["dv"] = ptr(a.dv);
    return d;
}

std::function<void(const AttentionArgs&)> attention_callback(const std::string& name, const char* what) {
    return [name, what](const AttentionArgs& a) {
        py::gil_scoped_acquire gil;
        call_python(name, what, a.problem, attention_pointers(a), a.stream);
    };
}

// A decode step's buffers and its sizes (DecodeArgs): the Python side builds its views from
// them without reading anything back from the device.
std::function<void(const DecodeArgs&)> decode_callback(const std::string& name) {
    return [name](const DecodeArgs& a) {
        py::gil_scoped_acquire gil;
        py::dict d;
        d["cu_q"] = ptr(a.cu_q);
        d["q"] = ptr(a.q);
        d["cu_k"] = ptr(a.cu_k);
        d["k"] = ptr(a.k);
        d["v"] = ptr(a.v);
        d["block_table"] = ptr(a.block_table);  // 0: packed caches
        d["sel"] = ptr(a.sel);
        d["out"] = ptr(a.out);
        d["lse"] = ptr(a.lse);
        d["total_q"] = a.total_q;
        d["max_q_len"] = a.max_q_len;
        d["page_size"] = a.page_size;
        d["table_width"] = a.table_width;
        d["gate"] = a.gate;
        call_python(name, "decode", a.cache, d, a.stream);
    };
}

// `like`: a built-in entry whose dtypes, head dims and can_implement the new one takes (a
// kernel called through the torch op implements what the kernel does); empty: dtypes and
// every head dim up to max_head_dim.
void register_entry(const std::string& name, const std::string& technique, const std::vector<std::string>& dtypes,
                    int max_head_dim, bool dense, bool has_gating, bool has_backward, bool writes_lse,
                    const std::string& block_means, const std::string& like, const std::string& cli_tool,
                    const std::string& cli_impl_flags, bool has_forward, bool has_decode, int decode_max_q_len) {
    Implementation impl;
    impl.name = name;
    impl.technique = technique;
    if (!like.empty()) {
        const Implementation* model = find_implementation(like);
        if (!model || model->external)
            throw std::invalid_argument("like='" + like + "' names no built-in implementation");
        impl.dtypes = model->dtypes;
        impl.head_dims = model->head_dims;
        impl.can_implement = model->can_implement;
    } else {
        for (const std::string& d : dtypes) impl.dtypes.push_back(parse_dtype(d));
        if (impl.dtypes.empty()) throw std::invalid_argument("an implementation needs at least one dtype");
        if (max_head_dim < 1)
            throw std::invalid_argument("max_head_dim " + std::to_string(max_head_dim) + " must be >= 1");
        impl.head_dims = HeadDimSet::up_to(max_head_dim);
    }
    impl.dense = dense;
    impl.writes_lse = writes_lse;
    impl.block_means = parse_block_means(block_means);
    impl.cli_tool = cli_tool;
    impl.cli_impl_flags = cli_impl_flags;
    if (has_gating) impl.gating = gating_callback(name);
    if (has_forward) impl.forward = attention_callback(name, "forward");
    if (has_backward) impl.backward = attention_callback(name, "backward");
    if (has_decode) impl.decode = decode_callback(name);
    impl.release_memory = [name] {
        py::gil_scoped_acquire gil;
        try {
            if (dispatcher()) dispatcher()(name, "release", py::none(), py::dict(), std::uintptr_t{0});
        } catch (py::error_already_set& e) {
            throw std::runtime_error(std::string(e.what()));
        }
    };
    impl.decode_max_q_len = decode_max_q_len;
    register_external(std::move(impl));
}

}  // namespace

void bind_external_entries(py::module_& m) {
    m.def(
        "set_dispatcher", [](py::object fn) { dispatcher() = std::move(fn); }, py::arg("fn"),
        "fn(name, what, problem, pointers, stream): what is 'gating', 'forward', 'backward', 'decode' "
        "(problem: the caches; pointers also carry the step's sizes) or 'release' (problem None: drop "
        "what the entry keeps cached on the device before `moba bench` measures memory)");
    m.def("register_external", &register_entry, py::arg("name"), py::arg("technique"), py::arg("dtypes"),
          py::arg("max_head_dim"), py::arg("dense") = false, py::arg("has_gating") = false,
          py::arg("has_backward") = false, py::arg("writes_lse") = true, py::arg("block_means") = "exact",
          py::arg("like") = "", py::arg("cli_tool") = "", py::arg("cli_impl_flags") = "",
          py::arg("has_forward") = true, py::arg("has_decode") = false, py::arg("decode_max_q_len") = 0,
          "Adds (or replaces) an external registry entry that calls the dispatcher; cli_tool and "
          "cli_impl_flags: how a record's command reruns it (default: `moba` and `--impl NAME`); "
          "has_decode: a decode step (DecodeArgs), taking at most decode_max_q_len new tokens per "
          "request (0: any)");
}

}  // namespace moba::python
