// Zero-copy views of device (or host) memory for torch, as DLPack capsules built here:
// torch.from_dlpack(capsule) wraps the memory without a copy and without numpy, which
// __cuda_array_interface__ would need (and which has no bfloat16). The memory stays owned by
// whoever allocated it (the harness); the capsule owns only the shape and strides.
//
// The structs are DLPack's stable (pre-1.0, unversioned) ABI, dlpack.h v0.8, written out here
// so no header is needed.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "harness/python/src/bindings.hpp"

namespace py = pybind11;

namespace moba::python {
namespace {

struct DLDevice {
    std::int32_t device_type;  // kDLCPU = 1, kDLCUDA = 2
    std::int32_t device_id;
};
struct DLDataType {
    std::uint8_t code;  // kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4
    std::uint8_t bits;
    std::uint16_t lanes;
};
struct DLTensor {
    void* data;
    DLDevice device;
    std::int32_t ndim;
    DLDataType dtype;
    std::int64_t* shape;
    std::int64_t* strides;
    std::uint64_t byte_offset;
};
struct DLManagedTensor {
    DLTensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(DLManagedTensor* self);
};

// The managed tensor with the shape and strides it points to.
struct View {
    DLManagedTensor managed{};
    std::vector<std::int64_t> shape, strides;
};

void delete_view(DLManagedTensor* self) { delete static_cast<View*>(self->manager_ctx); }

// A consumer renames the capsule "used_dltensor" and takes over the deleter; a capsule never
// consumed frees its view here.
void free_unconsumed(PyObject* capsule) {
    if (PyCapsule_IsValid(capsule, "dltensor")) {
        auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
        managed->deleter(managed);
    }
}

DLDataType dl_dtype(const std::string& name) {
    if (name == "bf16") return {4, 16, 1};
    if (name == "fp16") return {2, 16, 1};
    if (name == "fp32") return {2, 32, 1};
    if (name == "int32") return {0, 32, 1};
    if (name == "uint8") return {1, 8, 1};
    throw py::value_error("dlpack_view: unknown dtype '" + name + "' (bf16, fp16, fp32, int32, uint8)");
}

py::capsule dlpack_view(std::uintptr_t ptr, const std::vector<std::int64_t>& shape, const std::string& dtype,
                        bool cuda, int device_id) {
    auto* view = new View;
    view->shape = shape;
    view->strides.assign(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) view->strides[i - 1] = view->strides[i] * shape[i];
    DLTensor& t = view->managed.dl_tensor;
    t.data = reinterpret_cast<void*>(ptr);
    t.device = {cuda ? 2 : 1, cuda ? device_id : 0};
    t.ndim = static_cast<std::int32_t>(shape.size());
    try {
        t.dtype = dl_dtype(dtype);
    } catch (...) {
        delete view;
        throw;
    }
    t.shape = view->shape.data();
    t.strides = view->strides.data();
    t.byte_offset = 0;
    view->managed.manager_ctx = view;
    view->managed.deleter = delete_view;
    return py::capsule(&view->managed, "dltensor", &free_unconsumed);
}

}  // namespace

void bind_dlpack_views(py::module_& m) {
    m.def("dlpack_view", &dlpack_view, py::arg("ptr"), py::arg("shape"), py::arg("dtype"), py::arg("cuda") = true,
          py::arg("device_id") = 0,
          "A DLPack capsule over ptr (row-major shape, dtype bf16/fp16/fp32/int32/uint8) for torch.from_dlpack");
}

}  // namespace moba::python
