// Float -> bf16 / fp16 rounding from the IEEE 754 definitions: round to nearest, ties to even,
// on the raw bits. No CUDA headers here; suites/test_rounding.cpp compares with CUDA's own.
#include "reference/rounding.hpp"

#include <bit>

namespace moba::ref {

namespace {

constexpr std::uint32_t kF32SignMask = 0x8000'0000u;
constexpr std::uint32_t kF32AbsMask = 0x7FFF'FFFFu;
constexpr std::uint32_t kF32Inf = 0x7F80'0000u;

// Shift `value` right by `shift` (1..31) bits, rounding to nearest with ties to even.
std::uint32_t shift_right_rne(std::uint32_t value, int shift) {
    const std::uint32_t kept = value >> shift;
    const std::uint32_t rest = value & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    const bool up = rest > half || (rest == half && (kept & 1u) != 0u);
    return kept + (up ? 1u : 0u);
}

}  // namespace

std::uint16_t float_to_bf16_bits(float x) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    if ((bits & kF32AbsMask) > kF32Inf) {
        // NaN: keep sign and the top payload bits, force the quiet bit so it stays a NaN.
        return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
    }
    // bf16 is the top half of a float: round the low 16 bits away. A carry out of the
    // mantissa bumps the exponent, and out of the largest finite exponent gives infinity,
    // which is exactly IEEE rounding (overflow to inf when at or beyond the halfway point).
    return static_cast<std::uint16_t>(shift_right_rne(bits, 16));
}

float bf16_bits_to_float(std::uint16_t bits) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t float_to_fp16_bits(float x) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t sign = (bits & kF32SignMask) >> 16;
    const std::uint32_t abs = bits & kF32AbsMask;
    if (abs > kF32Inf) return static_cast<std::uint16_t>(sign | 0x7E00u);  // NaN (quiet)
    // 65520 = halfway between the largest finite fp16 (65504, odd mantissa) and 2^16:
    // from there on the value rounds to infinity.
    if (abs >= 0x477F'F000u) return static_cast<std::uint16_t>(sign | 0x7C00u);
    const int exponent = static_cast<int>(abs >> 23);  // biased float exponent
    const std::uint32_t mantissa = abs & 0x007F'FFFFu;
    if (exponent >= 113) {
        // Normal fp16 (unbiased exponent >= -14): rebias 127 -> 15 and drop 13 mantissa bits.
        // A mantissa carry correctly moves to the next exponent (never to inf: abs < 65520).
        const std::uint32_t rebased = (static_cast<std::uint32_t>(exponent - 112) << 23) | mantissa;
        return static_cast<std::uint16_t>(sign | shift_right_rne(rebased, 13));
    }
    // fp16 subnormal or zero: the value is m * 2^(exponent - 150) with the implicit bit in m,
    // in units of the fp16 subnormal step 2^-24 that is m >> (126 - exponent). Float
    // subnormals (exponent 0) are far below 2^-25 and round to zero like everything else
    // with a shift above 24; a carry to 0x400 is the smallest normal, encoded correctly.
    const int shift = 126 - exponent;
    if (exponent == 0 || shift > 24) return static_cast<std::uint16_t>(sign);
    return static_cast<std::uint16_t>(sign | shift_right_rne(mantissa | 0x0080'0000u, shift));
}

float fp16_bits_to_float(std::uint16_t bits) {
    const std::uint32_t sign = (static_cast<std::uint32_t>(bits) & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
    std::uint32_t mantissa = bits & 0x03FFu;
    if (exponent == 0x1Fu) return std::bit_cast<float>(sign | kF32Inf | (mantissa << 13));
    if (exponent != 0) {
        return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // Subnormal: normalise so the leading bit becomes the implicit one.
    std::uint32_t float_exponent = 113;  // 2^-14 with the implicit bit at position 10
    while ((mantissa & 0x0400u) == 0) {
        mantissa <<= 1;
        --float_exponent;
    }
    return std::bit_cast<float>(sign | (float_exponent << 23) | ((mantissa & 0x03FFu) << 13));
}

float round_to(DType dtype, float x) {
    switch (dtype) {
        case DType::bf16:
            return bf16_bits_to_float(float_to_bf16_bits(x));
        case DType::f16:
            return fp16_bits_to_float(float_to_fp16_bits(x));
        case DType::f32:
            return x;
    }
    return x;
}

}  // namespace moba::ref
