// reference/rounding.hpp against CUDA's own host conversions (cuda_bf16.h, cuda_fp16.h).
// Host functions only: this runs on machines without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "reference/common.hpp"
#include "reference/rounding.hpp"

namespace moba::ref {
namespace {

std::uint16_t cuda_bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
std::uint16_t cuda_fp16_bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
float cuda_bf16_to_float(std::uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
float cuda_fp16_to_float(std::uint16_t b) { return __half2float(__ushort_as_half(b)); }

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }

// Compares both conversions with CUDA's at x; NaN only has to stay NaN.
void expect_same_rounding(float x) {
    if (std::isnan(x)) {
        EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(x))));
        EXPECT_TRUE(std::isnan(fp16_bits_to_float(float_to_fp16_bits(x))));
        return;
    }
    EXPECT_EQ(float_to_bf16_bits(x), cuda_bf16_bits(x))
        << "bf16 of " << x << " (bits 0x" << std::hex << std::bit_cast<std::uint32_t>(x) << ")";
    EXPECT_EQ(float_to_fp16_bits(x), cuda_fp16_bits(x))
        << "fp16 of " << x << " (bits 0x" << std::hex << std::bit_cast<std::uint32_t>(x) << ")";
}

// Values around every rounding decision: ties, one ulp either side, the subnormal and
// overflow boundaries of fp16, the largest finite values, zeros, infinities, NaNs.
std::vector<float> edge_cases() {
    std::vector<float> xs = {
        0.0f,
        -0.0f,
        1.0f,
        -1.0f,
        std::numeric_limits<float>::infinity(),
        -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN(),
        -std::numeric_limits<float>::quiet_NaN(),
        from_bits(0x7F80'0001u),  // signalling NaN
        from_bits(0xFFC1'2345u),
        std::numeric_limits<float>::max(),
        -std::numeric_limits<float>::max(),
        std::numeric_limits<float>::min(),
        std::numeric_limits<float>::denorm_min(),
        -std::numeric_limits<float>::denorm_min(),
        65504.0f,
        65519.99f,
        65520.0f,
        -65520.0f,
        65536.0f,
        1e6f,
        std::ldexp(1.0f, -14),     // smallest fp16 normal
        std::ldexp(1.0f, -24),     // smallest fp16 subnormal
        std::ldexp(1.0f, -25),     // half of it: tie to 0
        std::ldexp(1.5f, -25),     // above the tie: rounds up
        std::ldexp(3.0f, -25),     // 1.5 subnormal steps: tie to 2
        std::ldexp(1023.5f, -24),  // tie between largest subnormal and min normal
        std::ldexp(1.0f, -26),
        std::ldexp(1.0f, -40)};
    // Around the largest finite bf16 (0x7F7F) and its overflow point.
    for (std::uint32_t b : {0x7F7F'0000u, 0x7F7F'7FFFu, 0x7F7F'8000u, 0x7F7F'8001u, 0x7F7F'FFFFu}) {
        xs.push_back(from_bits(b));
        xs.push_back(from_bits(b | 0x8000'0000u));
    }
    // Exact ties, and one float ulp on each side, for both formats, at several exponents
    // (fp16 ties sit at bit 12 of the float mantissa for normals, higher for subnormals).
    for (std::uint32_t exponent :
         {1u, 90u, 100u, 102u, 103u, 110u, 112u, 113u, 127u, 141u, 142u, 200u, 254u}) {
        for (std::uint32_t mantissa :
             {0x0000'0000u, 0x0000'8000u, 0x0001'8000u, 0x0000'1000u, 0x0000'3000u, 0x007F'F000u,
              0x007F'8000u, 0x0040'0000u, 0x0000'2000u, 0x0060'0000u, 0x0050'0000u}) {
            const std::uint32_t bits = (exponent << 23) | mantissa;
            for (std::uint32_t b : {bits - 1u, bits, bits + 1u}) {
                xs.push_back(from_bits(b));
                xs.push_back(from_bits(b | 0x8000'0000u));
            }
        }
    }
    return xs;
}

TEST(Rounding, EdgeCasesMatchCuda) {
    for (float x : edge_cases()) expect_same_rounding(x);
}

TEST(Rounding, RandomBitPatternsMatchCuda) {
    std::mt19937 rng(20240611);
    std::uniform_int_distribution<std::uint32_t> any;
    for (int n = 0; n < 1'000'000; ++n) expect_same_rounding(from_bits(any(rng)));
}

TEST(Rounding, RandomValuesInFp16RangeMatchCuda) {
    // Random bit patterns rarely land in fp16's range: draw exponents from it (and a little
    // beyond, both ends) so normals, subnormals and the overflow edge are all exercised.
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::uint32_t> exponent(95, 145);
    std::uniform_int_distribution<std::uint32_t> mantissa(0, 0x007F'FFFFu);
    std::uniform_int_distribution<std::uint32_t> sign(0, 1);
    for (int n = 0; n < 1'000'000; ++n) {
        expect_same_rounding(from_bits((sign(rng) << 31) | (exponent(rng) << 23) | mantissa(rng)));
    }
}

TEST(Rounding, EveryBitPatternConvertsBackLikeCuda) {
    for (std::uint32_t b = 0; b <= 0xFFFFu; ++b) {
        const auto bits = static_cast<std::uint16_t>(b);
        const float bf = bf16_bits_to_float(bits);
        const float hf = fp16_bits_to_float(bits);
        const float cuda_bf = cuda_bf16_to_float(bits);
        const float cuda_hf = cuda_fp16_to_float(bits);
        if (std::isnan(cuda_bf)) {
            EXPECT_TRUE(std::isnan(bf)) << std::hex << b;
        } else {
            EXPECT_EQ(std::bit_cast<std::uint32_t>(bf), std::bit_cast<std::uint32_t>(cuda_bf))
                << std::hex << b;
            // A representable value round-trips exactly.
            EXPECT_EQ(float_to_bf16_bits(bf), bits) << std::hex << b;
        }
        if (std::isnan(cuda_hf)) {
            EXPECT_TRUE(std::isnan(hf)) << std::hex << b;
        } else {
            EXPECT_EQ(std::bit_cast<std::uint32_t>(hf), std::bit_cast<std::uint32_t>(cuda_hf))
                << std::hex << b;
            EXPECT_EQ(float_to_fp16_bits(hf), bits) << std::hex << b;
        }
    }
}

TEST(Rounding, RoundToPerDtype) {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 100.0f);
    for (int n = 0; n < 10'000; ++n) {
        const float x = normal(rng);
        EXPECT_EQ(round_to(DType::f32, x), x);
        EXPECT_EQ(round_to(DType::bf16, x), cuda_bf16_to_float(cuda_bf16_bits(x)));
        EXPECT_EQ(round_to(DType::f16, x), cuda_fp16_to_float(cuda_fp16_bits(x)));
    }
    EXPECT_TRUE(std::isinf(round_to(DType::f16, 70000.0f)));
    EXPECT_EQ(round_to(DType::bf16, 1.0f + std::ldexp(1.0f, -8)), 1.0f);  // tie to even
    EXPECT_EQ(round_to(DType::f16, 1.0f + std::ldexp(3.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
}

// ---- the baseline's tensor-core model (SEMANTICS.md §5.1) ------------------------------------
// 1 + 3 * 2^-25 lies 1.5 half-ulps above 1: nearest gives 1 + 2^-23, toward zero gives 1.
TEST(TensorCoreModel, RoundsEachStepTowardZero) {
    std::vector<float> a(128, 0.0f), ones(128, 1.0f);
    a[0] = 1.0f;
    a[1] = 3 * std::ldexp(1.0f, -25);
    EXPECT_EQ(detail::dot_tc32(a.data(), ones.data(), 128), 1.0f);
    EXPECT_EQ(detail::dot32(a.data(), ones.data(), 128), 1.0f + std::ldexp(1.0f, -23));
    for (float& x : a) x = -x;
    EXPECT_EQ(detail::dot_tc32(a.data(), ones.data(), 128), -1.0f);  // toward zero, not down
}

// Within a step of 16 the sum is exact (2^24 + 1 - 2^24 = 1, lost by any fp32 running sum);
// across steps the accumulator is fp32 (the same terms 16 apart lose the 1).
TEST(TensorCoreModel, SumsAStepExactlyAndRoundsBetweenSteps) {
    std::vector<float> a(128, 0.0f), ones(128, 1.0f);
    a[0] = std::ldexp(1.0f, 24);
    a[1] = 1.0f;
    a[2] = -std::ldexp(1.0f, 24);
    EXPECT_EQ(detail::dot_tc32(a.data(), ones.data(), 128), 1.0f);
    std::vector<float> b(128, 0.0f);
    b[0] = std::ldexp(1.0f, 24);
    b[16] = 1.0f;
    b[32] = -std::ldexp(1.0f, 24);
    EXPECT_EQ(detail::dot_tc32(b.data(), ones.data(), 128), 0.0f);
    EXPECT_EQ(detail::dot_mma(DType::f32, a.data(), ones.data(), 128), detail::dot32(a.data(), ones.data(), 128));
}

}  // namespace
}  // namespace moba::ref
