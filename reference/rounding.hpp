// Exact CPU emulation of rounding float to bf16 / fp16 (round to nearest, ties to even,
// fp16 subnormals, overflow to infinity, NaN kept). Written from the IEEE definitions, not
// from CUDA's headers; suites/test_rounding.cpp checks it against CUDA's host conversions.
#pragma once

#include <cstdint>

#include "core/problem.hpp"

namespace moba::ref {

std::uint16_t float_to_bf16_bits(float x);
float bf16_bits_to_float(std::uint16_t bits);
std::uint16_t float_to_fp16_bits(float x);
float fp16_bits_to_float(std::uint16_t bits);

// Round x to the nearest value representable in dtype and return it as float
// (identity for DType::f32).
float round_to(DType dtype, float x);

}  // namespace moba::ref
