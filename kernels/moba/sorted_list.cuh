// The candidate order of the fused gating (kernels/moba/gating.cu) and the sorted register list
// its kernels for k - 1 <= 8 keep per row. Everything is __host__ __device__, so a host test
// (suites/test_sorted_list.cpp) checks the list against a sort on the CPU, where CI has no GPU.
#pragma once

#include <cuda_runtime.h>  // __host__, __device__, __forceinline__ for host compilers

#include <climits>
#include <cmath>

// The kernels need the loops below unrolled (an indexed register array would go to local
// memory); host compilers, nvcc's host pass included, do not know the pragma.
#if defined(__CUDA_ARCH__)
#define MOBA_SORTED_LIST_UNROLL _Pragma("unroll")
#else
#define MOBA_SORTED_LIST_UNROLL
#endif

namespace moba::sparse {

// Candidate order: higher score first, the lower block index first among equal scores.
__host__ __device__ __forceinline__ bool ranks_before(float score_a, int block_a,
                                                      float score_b, int block_b) {
    return score_a > score_b || (score_a == score_b && block_a < block_b);
}

// A row's best entries sorted in registers (entry 0 ranks first), for top-k with k - 1 <= 8:
// the lane-per-row merge of the shared-memory list replaced its worst entry and rescanned the
// list, a chain of dependent shared loads and compares per candidate (~115 instructions and
// several hundred cycles a round at FlashMoBA's setting, where ~2 rounds run every half). Here a
// candidate's insertion is eight independent compares and selects.
// The first 8 - n entries hold (+inf, -1), before which no entry ranks, so the list's last entry
// is always the n-th best real one: the row's threshold is a fixed register (a run-time index
// would put the list in local memory). Empty entries are (-inf, INT_MAX), after which every
// real entry ranks (NaN and -inf scores never pass a filter, and are never inserted).
struct SortedList8 {
    static constexpr int kEntries = 8;
    float score[kEntries];
    int block[kEntries];

    __host__ __device__ __forceinline__ void clear(int n) {
MOBA_SORTED_LIST_UNROLL
        for (int j = 0; j < kEntries; ++j) {
            const bool pad = j < kEntries - n;
            score[j] = pad ? INFINITY : -INFINITY;
            block[j] = pad ? -1 : INT_MAX;
        }
    }
    // Inserts (s, b) where b is larger than every block inserted before: the kernels visit blocks
    // in ascending order and insert a half's candidates by column. On an equal score the
    // candidate then ranks after every entry, so the score alone decides (the full candidate
    // order took three compares an entry). Entry j becomes entry j - 1 where the candidate ranks
    // before that one, the candidate where it ranks before entry j only, and stays otherwise;
    // entry 7 falls off the end.
    __host__ __device__ __forceinline__ void insert_ascending(float s, int b) {
        bool before[kEntries];
MOBA_SORTED_LIST_UNROLL
        for (int j = 0; j < kEntries; ++j) before[j] = s > score[j];
MOBA_SORTED_LIST_UNROLL
        for (int j = kEntries - 1; j > 0; --j) {
            const float shifted_score = before[j - 1] ? score[j - 1] : s;
            const int shifted_block = before[j - 1] ? block[j - 1] : b;
            score[j] = before[j] ? shifted_score : score[j];
            block[j] = before[j] ? shifted_block : block[j];
        }
        score[0] = before[0] ? s : score[0];
        block[0] = before[0] ? b : block[0];
    }
    __host__ __device__ __forceinline__ float threshold() const { return score[kEntries - 1]; }
    __host__ __device__ __forceinline__ bool full() const {
        return block[kEntries - 1] != INT_MAX;
    }
    // Writes the real entries' blocks to out[0..) in rank order; returns how many.
    __host__ __device__ __forceinline__ int copy_blocks(int* out) const {
        int count = 0;
MOBA_SORTED_LIST_UNROLL
        for (int j = 0; j < kEntries; ++j) {
            if (block[j] >= 0 && block[j] != INT_MAX) out[count++] = block[j];
        }
        return count;
    }
};

}  // namespace moba::sparse

#undef MOBA_SORTED_LIST_UNROLL
