// Bitwise comparison of two device buffers on the device (no copy to the host): `moba bench`
// checks that the selection its timed gating rewrote is the one it checked.
#pragma once

#include <cstdint>

namespace moba {

struct WordDifference {
    std::int64_t count = 0;   // 32-bit words that differ
    std::int64_t first = -1;  // index of the first of them; -1 when none
};

// Compares words [0, words) of a and b; synchronises the device. Throws moba::CudaError.
WordDifference differing_words(const void* a, const void* b, std::int64_t words);

}  // namespace moba
