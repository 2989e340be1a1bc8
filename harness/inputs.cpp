// make_inputs: the N(0,1) draw every input family starts from, the family's transform, and the
// rounding to the dtype that makes every value exactly what a kernel sees.
#include "harness/inputs.hpp"

#include <cmath>
#include <numbers>

#include "reference/rounding.hpp"

namespace moba {
namespace detail {

float Normals::next() {
    if (have_spare_) {
        have_spare_ = false;
        return spare_;
    }
    // Box-Muller on two uniforms in (0, 1].
    const double u1 = (static_cast<double>(bits() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(bits() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2.0 * std::numbers::pi * u2));
    have_spare_ = true;
    return static_cast<float>(r * std::cos(2.0 * std::numbers::pi * u2));
}

std::uint64_t Normals::bits() {  // splitmix64
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

std::int64_t Normals::below(std::int64_t n) {
    // 32 random bits times n, high half: exact in 64 bits for n < 2^32.
    return static_cast<std::int64_t>(((bits() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

}  // namespace detail

namespace {

// Unrounded: a family transforms these before the one rounding (for `normal` the transform is
// the identity, so rounding here or at the draw gives the same bits as the draw always did).
std::vector<float> draw(detail::Normals& rng, std::int64_t n) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& e : x) e = rng.next();
    return x;
}

void round_all(std::vector<float>& x, DType dtype) {
    for (auto& e : x) e = ref::round_to(dtype, e);
}

}  // namespace

HostInputs make_inputs(const Problem& problem, std::uint64_t seed, InputFamily family) {
    detail::Normals rng(seed);
    HostInputs in;
    in.q = draw(rng, problem.q_elems());
    in.k = draw(rng, problem.kv_elems());
    in.v = draw(rng, problem.kv_elems());
    in.dout = draw(rng, problem.q_elems());
    detail::apply_family(family, problem, seed, in);
    for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) round_all(*x, problem.dtype);
    return in;
}

}  // namespace moba
