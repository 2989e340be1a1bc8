#include "harness/inputs.hpp"

#include <cmath>
#include <numbers>

#include "reference/rounding.hpp"

namespace moba {
namespace {

class Normals {
public:
    explicit Normals(std::uint64_t seed) : state_(seed) {}

    float next() {
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

private:
    std::uint64_t bits() {  // splitmix64
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    std::uint64_t state_;
    float spare_ = 0;
    bool have_spare_ = false;
};

std::vector<float> draw(Normals& rng, std::int64_t n, DType dtype) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& e : x) e = ref::round_to(dtype, rng.next());
    return x;
}

}  // namespace

HostInputs make_inputs(const Problem& problem, std::uint64_t seed) {
    Normals rng(seed);
    HostInputs in;
    in.q = draw(rng, problem.q_elems(), problem.dtype);
    in.k = draw(rng, problem.kv_elems(), problem.dtype);
    in.v = draw(rng, problem.kv_elems(), problem.dtype);
    in.dout = draw(rng, problem.q_elems(), problem.dtype);
    return in;
}

}  // namespace moba
