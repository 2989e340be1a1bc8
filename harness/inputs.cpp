// make_inputs: the N(0,1) draw every input family starts from, the family's transform, and the
// rounding to the dtype that makes every value exactly what a kernel sees.
#include "harness/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "reference/parallel.hpp"
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

Normals Normals::at(std::uint64_t seed, std::uint64_t position) {
    Normals rng(seed + (position / 2) * 2 * 0x9E3779B97F4A7C15ull);
    if (position % 2 == 1) rng.next();  // the pair's cosine, so that next() gives its sine
    return rng;
}

std::int64_t Normals::below(std::int64_t n) {
    // 32 random bits times n, high half: exact in 64 bits for n < 2^32.
    return static_cast<std::int64_t>(((bits() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

}  // namespace detail

namespace {

// Unrounded: a family transforms these before the one rounding (for `normal` the transform is
// the identity, so rounding here or at the draw gives the same bits as the draw always did).
// Values [position, position + n) of the seed's stream, on every core in even-aligned chunks.
std::vector<float> draw(std::uint64_t seed, std::uint64_t position, std::int64_t n) {
    std::vector<float> x(static_cast<std::size_t>(n));
    constexpr std::int64_t kChunk = 1 << 16;
    ref::parallel_for((n + kChunk - 1) / kChunk, [&](std::int64_t chunk) {
        const std::int64_t begin = chunk * kChunk;
        const std::int64_t end = std::min(n, begin + kChunk);
        detail::Normals rng = detail::Normals::at(seed, position + static_cast<std::uint64_t>(begin));
        for (std::int64_t i = begin; i < end; ++i) x[static_cast<std::size_t>(i)] = rng.next();
    });
    return x;
}

void round_all(std::vector<float>& x, DType dtype) {
    ref::parallel_for_ranges(static_cast<std::int64_t>(x.size()), [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i)
            x[static_cast<std::size_t>(i)] = ref::round_to(dtype, x[static_cast<std::size_t>(i)]);
    });
}

}  // namespace

HostInputs make_inputs(const Problem& problem, std::uint64_t seed, InputFamily family) {
    const auto nq = static_cast<std::uint64_t>(problem.q_elems());
    const auto nk = static_cast<std::uint64_t>(problem.kv_elems());
    HostInputs in;  // q, k, v, dout: consecutive stretches of one stream
    in.q = draw(seed, 0, problem.q_elems());
    in.k = draw(seed, nq, problem.kv_elems());
    in.v = draw(seed, nq + nk, problem.kv_elems());
    in.dout = draw(seed, nq + 2 * nk, problem.q_elems());
    detail::apply_family(family, problem, seed, in);
    for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) round_all(*x, problem.dtype);
    return in;
}

QueryRowsAndKeys make_query_rows_and_keys(const Problem& problem, std::uint64_t seed, InputFamily family,
                                          const std::vector<std::int64_t>& tokens) {
    const std::int64_t row = static_cast<std::int64_t>(problem.heads_q) * problem.head_dim;
    HostInputs in;
    in.q.resize(tokens.size() * static_cast<std::size_t>(row));
    for (std::size_t r = 0; r < tokens.size(); ++r) {
        const std::int64_t t = tokens[r];
        if (t < 0 || t >= problem.total_tokens())
            throw std::invalid_argument("query token " + std::to_string(t) + " is outside [0, " +
                                        std::to_string(problem.total_tokens()) + ")");
        // Where make_inputs' stream reaches this row of q (q comes first in the stream).
        const std::vector<float> x = draw(seed, static_cast<std::uint64_t>(t * row), row);
        std::copy(x.begin(), x.end(), in.q.begin() + static_cast<std::ptrdiff_t>(r) * row);
    }
    in.k = draw(seed, static_cast<std::uint64_t>(problem.q_elems()), problem.kv_elems());
    detail::apply_family(family, problem, seed, in);  // q transforms are row-local
    round_all(in.q, problem.dtype);
    round_all(in.k, problem.dtype);
    return {std::move(in.q), std::move(in.k)};
}

}  // namespace moba
