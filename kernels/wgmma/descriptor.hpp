// wgmma's shared-memory matrix descriptors for the 128-byte-swizzled tiles of this folder: the
// reference encoding (sw128_descriptor) and the stepping form the kernels use (Sw128Descriptor).
// Host and device: suites/test_wgmma_descriptor.cpp checks on the CPU that both give the same
// bits for every tile address and step a CTA's shared memory allows.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MOBA_DESCRIPTOR_HD __host__ __device__ __forceinline__
#else
#define MOBA_DESCRIPTOR_HD inline
#endif

namespace moba::wgmma::detail {

// Shared-memory matrix descriptor (PTX ISA "matrix descriptor format"): start address,
// leading and stride byte offsets, all >> 4 in 14-bit fields; bits 62-63 = 1: 128-byte swizzle.
// The base-offset field stays 0: every tile this project describes starts 1024-byte aligned,
// so the swizzle phase of the start address is the one the hardware assumes.
MOBA_DESCRIPTOR_HD std::uint64_t sw128_descriptor(std::uint32_t smem_address, std::uint32_t lbo_bytes,
                                                  std::uint32_t sbo_bytes) {
    return static_cast<std::uint64_t>((smem_address & 0x3FFFFu) >> 4) |
           (static_cast<std::uint64_t>((lbo_bytes >> 4) & 0x3FFFu) << 16) |
           (static_cast<std::uint64_t>((sbo_bytes >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

// The same descriptor split so that stepping through a tile costs one add: the low word holds the
// start address >> 4 (bits 0-13) and the leading byte offset, the high word the stride byte offset
// and the swizzle mode. at(bytes) is sw128_descriptor(smem_address + bytes, lbo, sbo) for a
// 16-byte aligned address and any 16-byte multiple that keeps it below 256 KB (no carry out of
// the 14-bit field; a CTA has at most 227 KB), built with one integer add instead of a mask, a
// shift and an or per operand (ncu, dense dK/dV at 32K: the ALU pipe carried 48% of the
// instructions, much of them this arithmetic for the 40 descriptors of every tile).
struct Sw128Descriptor {
    std::uint32_t lo;
    std::uint32_t hi;
    MOBA_DESCRIPTOR_HD std::uint64_t at(std::uint32_t bytes) const {
        return (static_cast<std::uint64_t>(hi) << 32) | (lo + (bytes >> 4));
    }
};
MOBA_DESCRIPTOR_HD Sw128Descriptor sw128_descriptor_steps(std::uint32_t smem_address, std::uint32_t lbo_bytes,
                                                         std::uint32_t sbo_bytes) {
    return {((smem_address & 0x3FFFFu) >> 4) | (((lbo_bytes >> 4) & 0x3FFFu) << 16),
            ((sbo_bytes >> 4) & 0x3FFFu) | (1u << 30)};
}

}  // namespace moba::wgmma::detail
