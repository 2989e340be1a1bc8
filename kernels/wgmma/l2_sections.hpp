// The order in which the dense kernels' CTAs visit (head, tile) pairs: L2 sections.
//
// Every CTA of the dense causal forward and of the dQ kernel streams its kv head's K and V from
// key 0 to its diagonal; every dK/dV CTA streams its heads' Q and dO from the last row tile
// down to its key tile. CTAs started together advance together, so CTAs of one stream share its
// reads through L2. With heads fastest in dispatch order, the ~132 resident CTAs of an H200 at
// 128K MHA stream 32 heads at once (32 x 64 MB of K/V), about 4 CTAs per stream, and the L2
// (50 MB) keeps little of it: the dense MHA forward took 345 ms there against GQA's 253 ms
// (kernels/NOTES.md), the same FLOPs. FlashAttention-3's tile scheduler orders by sections
// instead: a section is as many heads as have streams that fit in L2 together (a power of two,
// at least one stream); sections run one after another, and inside one, heads fastest and the
// longest tiles first. Sections follow the heads' order, so a kv group's query heads, which
// share a stream, are in the same section.
//
// Host and device: l2_section_heads is the launchers' choice, section_order the kernels' map
// from the linear CTA index; suites/test_l2_sections.cpp checks both on the CPU.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define MOBA_L2_SECTIONS_HD __host__ __device__ __forceinline__
#else
#define MOBA_L2_SECTIONS_HD inline
#endif

namespace moba::wgmma {

// The L2 bytes a section's streams may take: FlashAttention-3's 32 MB of the H100's 50 MB (the
// H200's L2 is also 50 MB), leaving room for the outputs and the other streams' tails.
inline constexpr std::int64_t kL2SectionBytes = std::int64_t{32} << 20;

// Heads per section for `heads` heads read as streams of `stream_bytes` each, `heads_per_stream`
// consecutive heads sharing a stream (a kv group's query heads in the forward and dQ; 1 for the
// dK/dV kernel's head slots): the largest power of two of streams that fit in kL2SectionBytes,
// at least one, in heads, and at most `heads` (one section: the heads-fastest order).
inline int l2_section_heads(std::int64_t stream_bytes, int heads_per_stream, int heads) {
    std::int64_t streams = 1;
    while (streams * 2 * stream_bytes <= kL2SectionBytes && streams * heads_per_stream < heads) streams *= 2;
    return static_cast<int>(std::min<std::int64_t>(streams * heads_per_stream, heads));
}

struct SectionSlot {
    int head;  // in [0, heads)
    int rank;  // the tile's place among its head's tiles in dispatch order: 0 first
};

// CTA x of a grid of heads * tiles, in sections of `section` heads (the last section holds the
// remaining heads): section x / (section * tiles), inside it heads fastest.
MOBA_L2_SECTIONS_HD SectionSlot section_order(unsigned x, int heads, int tiles, int section) {
    const unsigned span = static_cast<unsigned>(section) * static_cast<unsigned>(tiles);
    const unsigned index = x / span;
    const unsigned r = x - index * span;
    const int first = static_cast<int>(index) * section;
    const int in_section = heads - first < section ? heads - first : section;
    return {first + static_cast<int>(r % static_cast<unsigned>(in_section)),
            static_cast<int>(r / static_cast<unsigned>(in_section))};
}

}  // namespace moba::wgmma

#undef MOBA_L2_SECTIONS_HD
