// The host side of the stray-write check (harness/guarded_buffer.hpp; SEMANTICS.md §5): what a
// guard band's bytes and an input's bytes say. The device side (guards around real outputs,
// planted writers) is test_naive_gpu's WritesOutsideTheOutputsAreCaught.
#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "harness/guarded_buffer.hpp"

namespace moba {
namespace {

std::vector<unsigned char> intact(std::size_t n) { return std::vector<unsigned char>(n, kGuardByte); }

TEST(GuardDamage, IntactGuardsSayNothing) {
    EXPECT_EQ(guard_damage(intact(kGuardHeadBytes), intact(kGuardTailBytes), "out"), "");
}

TEST(GuardDamage, AWritePastTheEndNamesItsSizeAndFirstOffset) {
    auto tail = intact(kGuardTailBytes);
    for (std::size_t i = 512; i < 1024; ++i) tail[i] = 0;
    EXPECT_EQ(guard_damage(intact(kGuardHeadBytes), tail, "out"),
              "512 bytes written past the end of out (first at byte +512 of the 65536-byte guard)");
}

TEST(GuardDamage, AWriteBeforeTheStartNamesTheNearestOffset) {
    auto head = intact(kGuardHeadBytes);
    head[kGuardHeadBytes - 4] = 1;   // the float just before the buffer
    head[kGuardHeadBytes - 100] = 2;
    EXPECT_EQ(guard_damage(head, intact(kGuardTailBytes), "lse"),
              "2 bytes written before the start of lse (nearest at byte -4)");
}

TEST(GuardDamage, BothSidesAreReported) {
    auto head = intact(kGuardHeadBytes), tail = intact(kGuardTailBytes);
    head[0] = 0;
    tail[kGuardTailBytes - 1] = 0;
    EXPECT_EQ(guard_damage(head, tail, "dk"),
              "1 bytes written before the start of dk (nearest at byte -4096); 1 bytes written past the end of dk "
              "(first at byte +65535 of the 65536-byte guard)");
}

TEST(InputChange, EqualBytesSayNothingAndADifferenceIsCountedFromItsFirst) {
    const std::vector<unsigned char> before{1, 2, 3, 4, 5, 6};
    EXPECT_EQ(input_change(before, before, "q"), "");
    std::vector<unsigned char> now = before;
    now[2] = 0;
    now[5] = 0;
    EXPECT_EQ(input_change(before, now, "q"),
              "q changed: 2 of 6 bytes differ (first at byte 2); an input is read, never written");
    EXPECT_EQ(input_change(before, std::vector<unsigned char>(3), "k"), "k changed size: 6 bytes, then 3");
}

// The digest an input is kept as: equal bytes hash equal chunk by chunk; one byte changed
// anywhere (the last chunk partial) is found, and located to its 4 KiB chunk.
TEST(InputChange, TheDigestFindsAndLocatesOneChangedByte) {
    std::vector<unsigned char> bytes(3 * ByteDigest::kChunk + 100);
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 131 + 7);
    const ByteDigest kept = digest(bytes);
    ASSERT_EQ(kept.chunks.size(), 4u);
    EXPECT_EQ(input_change(kept, bytes, "q"), "");
    for (const std::size_t at : {std::size_t{0}, ByteDigest::kChunk + 17, bytes.size() - 1}) {
        std::vector<unsigned char> now = bytes;
        now[at] ^= 1;
        const std::size_t from = at / ByteDigest::kChunk * ByteDigest::kChunk;
        EXPECT_EQ(input_change(kept, now, "q"),
                  fmt::format("q changed: 1 of 4 4 KiB chunks differ (the first at bytes [{}, {})); an input is "
                              "read, never written",
                              from, std::min(from + ByteDigest::kChunk, bytes.size())))
            << at;
    }
    EXPECT_EQ(input_change(kept, std::span<const unsigned char>(bytes).first(10), "q"),
              fmt::format("q changed size: {} bytes, then 10", bytes.size()));
}

}  // namespace
}  // namespace moba
