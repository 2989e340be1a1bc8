// The filtered float64 gating (reference/gating_fast.cpp) against the exhaustive one: the
// selection, boundary_gap and boundary_magnitude must be bitwise equal on random inputs of
// every dtype / head layout / varlen / top-k, on exact ties, on one block with far larger
// scores, on many near-equal scores, and on non-finite inputs (the exhaustive fallback).
// Also prints the speedup on a larger problem (informational, no threshold).
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference/reference.hpp"
#include "reference/rounding.hpp"

namespace moba::ref {
namespace {

using test::make_problem;

std::vector<float> normal_values(std::int64_t count, DType dtype, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> xs(static_cast<std::size_t>(count));
    for (float& x : xs) x = round_to(dtype, normal(rng));
    return xs;
}

HostInputs normal_inputs(const Problem& p, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    HostInputs in;
    in.q = normal_values(p.q_elems(), p.dtype, rng);
    in.k = normal_values(p.kv_elems(), p.dtype, rng);
    in.v.assign(static_cast<std::size_t>(p.kv_elems()), 1.0f);
    return in;
}

std::vector<std::uint64_t> bits(const std::vector<double>& xs) {
    std::vector<std::uint64_t> out(xs.size());
    std::transform(xs.begin(), xs.end(), out.begin(),
                   [](double x) { return std::bit_cast<std::uint64_t>(x); });
    return out;
}

// Rows (token, head) whose boundary gap is finite: the ones where ranking mattered.
int ranked_rows(const GatingResult& g) {
    return static_cast<int>(std::count_if(g.boundary_gap.begin(), g.boundary_gap.end(),
                                          [](double x) { return std::isfinite(x); }));
}

// Runs both paths, expects bitwise equal results; returns the exhaustive one.
GatingResult expect_same(const Problem& p, const HostInputs& in, const std::string& what) {
    const GatingResult fast = gating(p, in);
    const GatingResult slow = gating_exhaustive(p, in);
    EXPECT_EQ(fast.selection.slots, slow.selection.slots) << what;
    EXPECT_EQ(fast.selection.blocks, slow.selection.blocks) << what;
    EXPECT_EQ(bits(fast.boundary_gap), bits(slow.boundary_gap)) << what;
    EXPECT_EQ(bits(fast.boundary_magnitude), bits(slow.boundary_magnitude)) << what;
    return slow;
}

// The D values of k at packed token `token`, kv head hk.
float* k_row(const Problem& p, HostInputs& in, std::int64_t token, int hk) {
    return in.k.data() + (token * p.heads_kv + hk) * p.head_dim;
}

TEST(ReferenceGating, FastEqualsExhaustiveOnRandomInputs) {
    struct Heads {
        int q, kv;
    };
    std::uint64_t seed = 1;
    for (DType dtype : {DType::bf16, DType::f16, DType::f32}) {
        for (int dim : {64, 128}) {
            for (Heads heads : {Heads{4, 4}, Heads{4, 2}, Heads{4, 1}}) {
                for (int topk : {1, 2, 3, 8, 64}) {
                    // Varlen with length-1 sequences, partial last blocks, 45 blocks at most.
                    const Problem p = make_problem({1, 700, 37, 1, 513}, heads.q, heads.kv, dim,
                                                   16, topk, dtype);
                    const std::string what = p.flags();
                    const GatingResult g = expect_same(p, normal_inputs(p, seed++), what);
                    // k = 64 >= every block count, k = 1 ranks nothing; otherwise most rows rank.
                    if (topk > 1 && topk < 64) {
                        EXPECT_GT(ranked_rows(g), p.total_tokens() * heads.q / 2) << what;
                    }
                }
            }
        }
    }
}

TEST(ReferenceGating, ExactTiesGoToTheLowerBlock) {
    const Problem p = make_problem({512, 300}, 4, 2, 64, 16, 3);
    HostInputs in = normal_inputs(p, 11);
    // Every third block of each sequence repeats the keys of its block 1: exact ties.
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    for (int s = 0; s < p.batch(); ++s) {
        for (std::int64_t b = 4; (b + 1) * p.block <= p.seqlens[s]; b += 3) {
            for (int i = 0; i < p.block; ++i) {
                for (int hk = 0; hk < p.heads_kv; ++hk) {
                    std::copy_n(k_row(p, in, cu[s] + p.block + i, hk), p.head_dim,
                                k_row(p, in, cu[s] + b * p.block + i, hk));
                }
            }
        }
    }
    const GatingResult g = expect_same(p, in, "duplicated blocks");
    // The ties reach the boundary (gap exactly 0), so the tie rule is exercised.
    EXPECT_GT(std::count(g.boundary_gap.begin(), g.boundary_gap.end(), 0.0), 100);
}

TEST(ReferenceGating, OneBlockWithLargeScores) {
    for (int topk : {2, 3, 8}) {
        const Problem p = make_problem({640, 200}, 8, 2, 128, 32, topk, DType::bf16);
        HostInputs in = normal_inputs(p, 21 + static_cast<std::uint64_t>(topk));
        // Block 3 of sequence 0 scaled by 16 (exact): its error bound is 16x the others'.
        for (std::int64_t t = 3 * p.block; t < 4 * p.block; ++t) {
            for (int hk = 0; hk < p.heads_kv; ++hk) {
                float* k = k_row(p, in, t, hk);
                for (int d = 0; d < p.head_dim; ++d) k[d] *= 16.0f;
            }
        }
        expect_same(p, in, "x16 block, k " + std::to_string(topk));
    }
}

TEST(ReferenceGating, ManyNearEqualScores) {
    // Every block's keys are one vector with a few last-bit steps per block: all scores agree
    // to about 2^-20 relative, inside the fp32 error, so most blocks survive the filter and
    // only float64 separates them.
    const Problem p = make_problem({2048, 1000}, 4, 2, 128, 32, 8);
    std::mt19937_64 rng(31);
    HostInputs in = normal_inputs(p, 31);
    std::vector<float> base = normal_values(p.head_dim, DType::f32, rng);
    std::uniform_int_distribution<int> steps(0, 7);
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    for (int s = 0; s < p.batch(); ++s) {
        for (std::int64_t b = 0; b * p.block < p.seqlens[s]; ++b) {
            for (int hk = 0; hk < p.heads_kv; ++hk) {
                std::vector<float> key = base;
                for (float& x : key) {
                    for (int n = steps(rng); n > 0; --n) {
                        x = std::nextafter(x, std::numeric_limits<float>::infinity());
                    }
                }
                const std::int64_t t1 = std::min<std::int64_t>((b + 1) * p.block, p.seqlens[s]);
                for (std::int64_t t = b * p.block; t < t1; ++t) {
                    std::copy(key.begin(), key.end(), k_row(p, in, cu[s] + t, hk));
                }
            }
        }
    }
    const GatingResult g = expect_same(p, in, "near-equal scores");
    ASSERT_GT(ranked_rows(g), 0);
    // The gaps really are tiny against the scores' magnitude.
    int tiny = 0;
    for (std::size_t i = 0; i < g.boundary_gap.size(); ++i) {
        if (std::isfinite(g.boundary_gap[i]) &&
            g.boundary_gap[i] < 0x1p-20 * g.boundary_magnitude[i]) {
            ++tiny;
        }
    }
    EXPECT_GT(tiny, ranked_rows(g) / 2);
}

TEST(ReferenceGating, NonFiniteRowsFallBack) {
    const Problem p = make_problem({400, 130}, 4, 2, 64, 16, 4);
    HostInputs in = normal_inputs(p, 41);
    in.q[(300 * p.heads_q + 1) * p.head_dim + 5] = std::numeric_limits<float>::quiet_NaN();
    in.q[(310 * p.heads_q + 2) * p.head_dim + 7] = std::numeric_limits<float>::infinity();
    k_row(p, in, 5 * p.block + 2, 1)[3] = -std::numeric_limits<float>::infinity();
    // Finite keys whose fp32 scores overflow: block 8 of kv head 0 at 2^120.
    for (std::int64_t t = 8 * p.block; t < 9 * p.block; ++t) {
        float* k = k_row(p, in, t, 0);
        for (int d = 0; d < p.head_dim; ++d) k[d] = std::ldexp(k[d], 120);
    }
    expect_same(p, in, "non-finite");
}

double seconds_of(const auto& fn) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(ReferenceGating, SpeedupOnALargerProblem) {
    // 64K tokens, Hq 8, Hkv 2, D 128, block 64 (1024 blocks), k 8. Printed, not judged.
    const Problem p = make_problem({65536}, 8, 2, 128, 64, 8, DType::bf16);
    const HostInputs in = normal_inputs(p, 51);
    GatingResult fast, slow;
    const double t_fast = seconds_of([&] { fast = gating(p, in); });
    const double t_slow = seconds_of([&] { slow = gating_exhaustive(p, in); });
    std::printf("gating %s: exhaustive %.2f s, fast %.2f s, speedup %.1fx\n", p.flags().c_str(),
                t_slow, t_fast, t_slow / t_fast);
    EXPECT_EQ(fast.selection.blocks, slow.selection.blocks);
    EXPECT_EQ(bits(fast.boundary_gap), bits(slow.boundary_gap));
    EXPECT_EQ(bits(fast.boundary_magnitude), bits(slow.boundary_magnitude));
}

}  // namespace
}  // namespace moba::ref
