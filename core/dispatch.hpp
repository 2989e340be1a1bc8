// The one runtime -> compile-time switch of the project: a problem's dtype and head dim to the
// element type T and a head-dim constant, in the spirit of flash-attention's static_switch.h.
// Each launcher names the instances it compiles (DTypes<...>, HeadDims<...>) and gets one call
// fn(T{}, std::integral_constant<int, D>{}); a value outside those lists throws
// std::invalid_argument naming it, so an unsupported shape can never run another instance.
// Needs the CUDA half-precision headers: include it from .cu files (or with nvcc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "core/problem.hpp"

namespace moba {

template <typename... T>
struct DTypes {};
template <int... D>
struct HeadDims {};

// The element type of each DType: float, __half, __nv_bfloat16.
template <typename T>
constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, float>) return DType::f32;
    else if constexpr (std::is_same_v<T, __half>) return DType::f16;
    else {
        static_assert(std::is_same_v<T, __nv_bfloat16>, "dtype_of: float, __half or __nv_bfloat16");
        return DType::bf16;
    }
}

// fn(T{}) for the T of `dtype` among Types.
template <typename... T, typename Fn>
void dispatch_dtype(DTypes<T...>, DType dtype, Fn&& fn) {
    const bool found = ((dtype == dtype_of<T>() ? (fn(T{}), true) : false) || ...);
    if (!found)
        throw std::invalid_argument("no kernel instance for dtype " + std::string(to_string(dtype)));
}

// fn(std::integral_constant<int, D>{}) for D == head_dim among Dims.
template <int... D, typename Fn>
void dispatch_head_dim(HeadDims<D...>, int head_dim, Fn&& fn) {
    const bool found =
        ((head_dim == D ? (fn(std::integral_constant<int, D>{}), true) : false) || ...);
    if (!found)
        throw std::invalid_argument("no kernel instance for head dim " + std::to_string(head_dim));
}

// fn(std::integral_constant<int, D>{}) for the smallest D >= head_dim among Dims (ascending):
// for kernels whose instance is a capacity (rows of up to D elements) rather than an exact size.
template <int... D, typename Fn>
void dispatch_head_dim_up_to(HeadDims<D...>, int head_dim, Fn&& fn) {
    const bool found =
        ((head_dim <= D ? (fn(std::integral_constant<int, D>{}), true) : false) || ...);
    if (!found)
        throw std::invalid_argument("no kernel instance for head dim " + std::to_string(head_dim));
}

// fn(T{}, std::integral_constant<int, D>{}): both switches at once, exact head dims.
template <typename Types, typename Dims, typename Fn>
void dispatch(Types types, Dims dims, DType dtype, int head_dim, Fn&& fn) {
    dispatch_dtype(types, dtype, [&](auto tag) {
        dispatch_head_dim(dims, head_dim, [&](auto dim) { fn(tag, dim); });
    });
}

// The tensor-core kernels' instances: bf16 and fp16, head dims 64 and 128.
using TensorCoreDTypes = DTypes<__nv_bfloat16, __half>;
using TensorCoreHeadDims = HeadDims<64, 128>;

template <typename Fn>
void dispatch_tensor_core(const Problem& problem, Fn&& fn) {
    dispatch(TensorCoreDTypes{}, TensorCoreHeadDims{}, problem.dtype, problem.head_dim,
             std::forward<Fn>(fn));
}

}  // namespace moba
