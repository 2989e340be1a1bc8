// CPU checks of the wgmma descriptors (kernels/wgmma/descriptor.hpp): the stepping form the
// kernels use (one add per operand) gives the reference encoding's bits for every 16-byte aligned
// tile address and step inside a CTA's 227 KB of shared memory, with the leading / stride byte
// offsets the kernels pass; and the limit it relies on is real (past 256 KB the two differ). No GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "kernels/wgmma/descriptor.hpp"

namespace moba::wgmma::detail {
namespace {

constexpr std::uint32_t kCtaSharedBytes = 227 * 1024;

// (leading, stride) byte offsets of the kernels' operands: K-major tiles (16, 1024), the dK/dV
// kernel's MN-major Q / dO tiles of 64 rows (64 x 128, 1024) and the forward's MN-major V tiles of
// 128 keys (128 x 128, 1024).
constexpr std::pair<std::uint32_t, std::uint32_t> kOffsets[] = {{16, 1024}, {64 * 128, 1024}, {128 * 128, 1024}};

TEST(WgmmaDescriptor, StepsGiveTheReferenceBitsEverywhereInACta) {
    for (const auto& [lbo, sbo] : kOffsets) {
        std::uint64_t checked = 0;
        for (std::uint32_t base = 0; base < kCtaSharedBytes; base += 16) {
            const Sw128Descriptor d = sw128_descriptor_steps(base, lbo, sbo);
            // Every step a kernel takes is below 32 KB (a tile); all 16-byte multiples up to 64 KB.
            for (std::uint32_t step = 0; step <= 64 * 1024 && base + step < kCtaSharedBytes; step += 16) {
                const std::uint64_t want = sw128_descriptor(base + step, lbo, sbo);
                if (d.at(step) != want) {
                    FAIL() << "base " << base << " step " << step << " lbo " << lbo << " sbo " << sbo << ": " << std::hex
                           << d.at(step) << " != " << want;
                }
                ++checked;
            }
        }
        EXPECT_GT(checked, std::uint64_t{50'000'000});  // the loops ran: ~59 M pairs per offset pair
    }
}

TEST(WgmmaDescriptor, ReferenceFieldsAreThePtxLayout) {
    // Start address >> 4 in bits 0-13, leading byte offset >> 4 in 16-29, stride >> 4 in 32-45,
    // 128-byte swizzle in bits 62-63 = 1.
    const std::uint64_t d = sw128_descriptor(0x1230, 8192, 1024);
    EXPECT_EQ(d & 0x3FFFu, 0x123u);
    EXPECT_EQ((d >> 16) & 0x3FFFu, 8192u >> 4);
    EXPECT_EQ((d >> 32) & 0x3FFFu, 1024u >> 4);
    EXPECT_EQ(d >> 62, 1u);
    EXPECT_EQ(d & ((std::uint64_t{3} << 14) | (std::uint64_t{3} << 30) | (std::uint64_t{0xFFFF} << 46)), 0u);
}

TEST(WgmmaDescriptor, PastTheFieldTheStepsCarryIntoTheLeadingOffset) {
    // The reason for the 256 KB bound: at 0x3FFF0 + 16 the reference wraps its 18-bit address
    // to 0, the stepping form carries into bit 14 (reserved) and differs.
    const Sw128Descriptor d = sw128_descriptor_steps(0x3FFF0, 16, 1024);
    EXPECT_NE(d.at(16), sw128_descriptor(0x3FFF0 + 16, 16, 1024));
    EXPECT_EQ(d.at(0), sw128_descriptor(0x3FFF0, 16, 1024));
}

}  // namespace
}  // namespace moba::wgmma::detail
