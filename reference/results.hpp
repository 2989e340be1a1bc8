// What a float64 truth returns: the CPU reference (reference.hpp) and the GPU one
// (gpu/attention64.hpp) both. Header-only types, so that neither library depends on the other.
#pragma once

#include <vector>

namespace moba::ref {

struct Forward {
    std::vector<double> out;  // [total, Hq, D]
    std::vector<double> lse;  // [Hq, total]
};
struct Gradients {
    std::vector<double> dq;  // [total, Hq, D]
    std::vector<double> dk;  // [total, Hkv, D] summed over the group's query heads
    std::vector<double> dv;  // [total, Hkv, D]
};

}  // namespace moba::ref
