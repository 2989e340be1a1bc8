// Host-side tensors exchanged between the harness, the float64 reference and the kernels.
// Values are stored as float but are exactly representable in the problem's dtype: the
// reference upcasts exactly the values the kernel sees.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"

namespace moba {

struct HostInputs {
    std::vector<float> q;     // [total, Hq, D]
    std::vector<float> k;     // [total, Hkv, D]
    std::vector<float> v;     // [total, Hkv, D]
    std::vector<float> dout;  // [total, Hq, D] upstream gradient for backward
};

// Block selection of every (query token, query head): `slots` block indices per pair,
// local to the query's sequence (block j covers tokens [j*Bs, (j+1)*Bs) of that sequence),
// ascending, unused slots are -1. Layout [total, Hq, slots].
struct Selection {
    int slots = 0;
    std::vector<std::int32_t> blocks;
};

// Results of an implementation under test, copied back and upcast to float.
struct ForwardOutput {
    std::vector<float> out;  // [total, Hq, D]
    std::vector<float> lse;  // [Hq, total], natural log of the scaled scores' exp-sum
};

struct GradientOutput {
    std::vector<float> dq;  // [total, Hq, D]
    std::vector<float> dk;  // [total, Hkv, D]
    std::vector<float> dv;  // [total, Hkv, D]
};

}  // namespace moba
