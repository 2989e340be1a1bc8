// Helpers shared by the CPU test binaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/problem.hpp"

namespace moba::test {

// n draws of N(0, 1) from a generator seeded with `seed`: the same values on every run.
inline std::vector<float> normal_values(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    return x;
}

// A validated problem; throws std::invalid_argument for a bad shape, as Problem::validate does.
inline Problem make_problem(std::vector<int> seqlens, int heads_q, int heads_kv, int dim, int block,
                            int topk, DType dtype = DType::f32) {
    Problem p;
    p.seqlens = std::move(seqlens);
    p.heads_q = heads_q;
    p.heads_kv = heads_kv;
    p.head_dim = dim;
    p.block = block;
    p.topk = topk;
    p.dtype = dtype;
    p.validate();
    return p;
}

// Expects `fn` to throw std::invalid_argument whose message contains `needle`.
template <class F>
void expect_error(F&& fn, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace moba::test
