// Seeded random inputs, never zeros: standard normal values, shaped by an input family
// (input_families.hpp), rounded to the problem's dtype, so the float64 reference sees exactly
// what the kernel sees. Deterministic across platforms (splitmix64 and Box-Muller written here,
// not <random>'s implementation-defined normals).
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "harness/input_families.hpp"

namespace moba {

// q, k, v, dout drawn in that order from one stream of N(0,1) values, then transformed as
// `family` says (SEMANTICS.md "Input families"), then each value rounded to problem.dtype.
// InputFamily::normal is the untransformed draw: the inputs every report before the families
// existed was run on, bit for bit.
HostInputs make_inputs(const Problem& problem, std::uint64_t seed,
                       InputFamily family = InputFamily::normal);

// q at the listed tokens and all of k: bitwise rows `tokens` of make_inputs(problem, seed,
// family).q and its k, without drawing v, dout or the other q rows (what gating needs, at cache
// lengths where the whole q would not fit: decode, SEMANTICS.md §9). q_rows [T, Hq, D].
// Throws std::invalid_argument for a token outside [0, total).
struct QueryRowsAndKeys {
    std::vector<float> q_rows;
    std::vector<float> k;
};
QueryRowsAndKeys make_query_rows_and_keys(const Problem& problem, std::uint64_t seed, InputFamily family,
                                          const std::vector<std::int64_t>& tokens);

namespace detail {

// The generator behind make_inputs, shared with the family transforms (which draw their
// directions and block choices from a stream of their own, so the base draw never shifts).
class Normals {
public:
    explicit Normals(std::uint64_t seed) : state_(seed) {}
    // The generator after `position` values of next(): splitmix64's state is a counter and each
    // Box-Muller pair takes two draws, so any position is reached in O(1). This is what lets
    // make_inputs draw on every core and still give the sequential stream's bits.
    static Normals at(std::uint64_t seed, std::uint64_t position);

    float next();           // N(0, 1), Box-Muller on two uniforms
    std::uint64_t bits();   // splitmix64: 64 uniform bits
    // Uniform integer in [0, n), 1 <= n < 2^32 (multiply-shift on 32 bits: a bias below n / 2^32,
    // nothing for a block count, and the same result on every platform).
    std::int64_t below(std::int64_t n);

private:
    std::uint64_t state_;
    float spare_ = 0;
    bool have_spare_ = false;
};

}  // namespace detail
}  // namespace moba
