// Seeded random inputs, never zeros: standard normal values rounded to the problem's dtype,
// so the float64 reference sees exactly what the kernel sees. Deterministic across platforms
// (splitmix64 and Box-Muller written here, not <random>'s implementation-defined normals).
#pragma once

#include <cstdint>

#include "core/problem.hpp"
#include "core/tensors.hpp"

namespace moba {

HostInputs make_inputs(const Problem& problem, std::uint64_t seed);

}  // namespace moba
