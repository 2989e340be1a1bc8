// The input families' names and transforms (SEMANTICS.md "Input families"). Each transform
// works on the unrounded draw with +, *, sqrt only (correctly rounded, so the same bits on
// every platform); make_inputs rounds to the dtype afterwards.
#include "harness/input_families.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "harness/inputs.hpp"

namespace moba {
namespace {

constexpr std::array kFamilies = {InputFamily::normal, InputFamily::dominant, InputFamily::sink,
                                  InputFamily::recency, InputFamily::peaked, InputFamily::large_v,
                                  InputFamily::ties};

// Scaled score that an aligned key adds against every query (dominant, sink): e^8 ~ 3000
// times the weight of an unaligned key, so a block of them outweighs any own block.
constexpr double kAlignedScore = 8.0;
// Root mean square of the scaled score q.k under `peaked` (mean |score| ~ 40).
constexpr double kPeakedRms = 50.0;
// large_v: a power of two (so scaling commutes with rounding) and a cap that keeps
// out = P V (a convex combination of v) and the fp16 backward's dP = dout . v far from 65504.
constexpr float kLargeVFactor = 256.0f;
constexpr float kLargeVCap = 1024.0f;
// recency: the gating-score step between adjacent blocks, in standard deviations of a block
// score's noise, and the largest trend shift of a key, per element (RMS).
constexpr double kRecencySigmas = 4.0;
constexpr double kRecencyMaxShift = 4.0;

// Layout offsets ([total, H, D] row starts) and per-sequence block bounds.
struct Layout {
    const Problem& p;
    std::vector<std::int32_t> cu;
    explicit Layout(const Problem& problem) : p(problem), cu(problem.cu_seqlens()) {}
    std::size_t q_row(std::int64_t t, int h) const {
        return static_cast<std::size_t>((t * p.heads_q + h) * p.head_dim);
    }
    std::size_t kv_row(std::int64_t t, int g) const {
        return static_cast<std::size_t>((t * p.heads_kv + g) * p.head_dim);
    }
    int blocks(int s) const { return (p.seqlens[s] + p.block - 1) / p.block; }
    int full_blocks(int s) const { return p.seqlens[s] / p.block; }
};

// scale * sqrt(D): 1 for the default scale. The score targets divide by it so that they hold
// for any --scale; clamped so a freak scale cannot push values towards the fp16 range.
double scale_ratio(const Problem& p) {
    return std::clamp(p.scale() * std::sqrt(static_cast<double>(p.head_dim)), 1.0 / 16, 16.0);
}

// One unit direction per kv head, shared by the group's query heads.
std::vector<std::vector<double>> directions(const Problem& p, detail::Normals& rng) {
    std::vector<std::vector<double>> u(static_cast<std::size_t>(p.heads_kv));
    for (auto& dir : u) {
        dir.resize(static_cast<std::size_t>(p.head_dim));
        double norm2 = 0.0;
        for (auto& e : dir) {
            e = rng.next();
            norm2 += e * e;
        }
        const double inv = 1.0 / std::sqrt(norm2);  // D >= 1 normals: zero has probability 0
        for (auto& e : dir) e *= inv;
    }
    return u;
}

void add(float* x, const std::vector<double>& dir, double amount) {
    for (std::size_t d = 0; d < dir.size(); ++d) {
        x[d] = static_cast<float>(static_cast<double>(x[d]) + amount * dir[d]);
    }
}

// Every query gets sqrt(D) * u (one unit of RMS per element along its kv head's direction), so
// a key shifted by b * u scores sqrt(D) * b more against every query, whatever its noise.
// Row-local, so it walks the rows in.q holds: every token's, or a subset's (apply_family).
void align_queries(const Layout& l, const std::vector<std::vector<double>>& u, HostInputs& in) {
    const double a = std::sqrt(static_cast<double>(l.p.head_dim));
    const auto rows = static_cast<std::int64_t>(in.q.size()) / (l.p.heads_q * l.p.head_dim);
    for (std::int64_t t = 0; t < rows; ++t) {
        for (int h = 0; h < l.p.heads_q; ++h) {
            add(in.q.data() + l.q_row(t, h), u[static_cast<std::size_t>(h / l.p.group())], a);
        }
    }
}

// Keys of block `c` of sequence `s` (all kv heads) shifted by b * u_g, b chosen so the scaled
// score against an aligned query rises by kAlignedScore: scale * sqrt(D) * b = kAlignedScore.
void align_block(const Layout& l, const std::vector<std::vector<double>>& u, int s, int c,
                 HostInputs& in) {
    const double b = kAlignedScore / scale_ratio(l.p);
    const std::int64_t t0 = l.cu[s] + static_cast<std::int64_t>(c) * l.p.block;
    const std::int64_t t1 = std::min<std::int64_t>(t0 + l.p.block, l.cu[s + 1]);
    for (std::int64_t t = t0; t < t1; ++t) {
        for (int g = 0; g < l.p.heads_kv; ++g) {
            add(in.k.data() + l.kv_row(t, g), u[static_cast<std::size_t>(g)], b);
        }
    }
}

void dominant_or_sink(const Problem& p, detail::Normals& rng, bool sink, HostInputs& in) {
    const Layout l(p);
    const auto u = directions(p, rng);
    align_queries(l, u, in);
    for (int s = 0; s < p.batch(); ++s) {
        const int n = l.blocks(s);
        // dominant: any block a later block can route to (so a full one), uniformly; none in a
        // one-block sequence. The sink is there whatever the length: it pulls softmax mass too.
        if (n < 2 && !sink) continue;
        const int c = sink ? 0 : static_cast<int>(rng.below(n - 1));
        align_block(l, u, s, c, in);
    }
}

// Key at local position j gets beta * (j / Bs) * u: block means step by beta along u, so the
// gating score rises by sqrt(D) * beta per block, kRecencySigmas times the noise of a block
// score (q . mean of Bs N(0,1) keys, |q|^2 ~ 2 D: sd sqrt(2 D / Bs)), unless the sequence is so
// long that the last key's shift would pass kRecencyMaxShift per element.
void recency(const Problem& p, detail::Normals& rng, HostInputs& in) {
    const Layout l(p);
    const auto u = directions(p, rng);
    align_queries(l, u, in);
    const double dim = static_cast<double>(p.head_dim);
    const double bs = static_cast<double>(p.block);
    for (int s = 0; s < p.batch(); ++s) {
        const double span = std::max(1.0, static_cast<double>(p.seqlens[s] - 1) / bs);
        const double beta =
            std::min(kRecencySigmas * std::sqrt(2.0 / bs), kRecencyMaxShift * std::sqrt(dim) / span);
        for (int j = 0; j < p.seqlens[s]; ++j) {
            for (int g = 0; g < p.heads_kv; ++g) {
                add(in.k.data() + l.kv_row(l.cu[s] + j, g), u[static_cast<std::size_t>(g)],
                    beta * static_cast<double>(j) / bs);
            }
        }
    }
}

// q and k times f: scale * q . k = scale * f^2 * (q0 . k0), q0 . k0 ~ N(0, D).
void peaked(const Problem& p, HostInputs& in) {
    const double f = std::sqrt(kPeakedRms / scale_ratio(p));
    for (auto* x : {&in.q, &in.k}) {
        for (auto& e : *x) e = static_cast<float>(static_cast<double>(e) * f);
    }
}

void large_v(HostInputs& in) {
    for (auto& e : in.v) e = std::clamp(e * kLargeVFactor, -kLargeVCap, kLargeVCap);
}

// Every full block b >= 2 of a sequence becomes a copy of block b mod 2 (all kv heads): each
// query sees two distinct block scores, so almost every selection boundary falls between two
// equal scores and the lower-index rule alone decides it. A partial last block is left alone:
// it is only ever an own block.
void ties(const Problem& p, HostInputs& in) {
    const Layout l(p);
    const std::size_t block_elems =
        static_cast<std::size_t>(p.block) * static_cast<std::size_t>(p.heads_kv * p.head_dim);
    for (int s = 0; s < p.batch(); ++s) {
        for (int b = 2; b < l.full_blocks(s); ++b) {
            const auto src = in.k.begin() + static_cast<std::ptrdiff_t>(
                                                 l.kv_row(l.cu[s] + (b % 2) * p.block, 0));
            const auto dst = static_cast<std::ptrdiff_t>(
                l.kv_row(l.cu[s] + static_cast<std::int64_t>(b) * p.block, 0));
            std::copy(src, src + static_cast<std::ptrdiff_t>(block_elems), in.k.begin() + dst);
        }
    }
}

}  // namespace

std::string_view to_string(InputFamily family) {
    switch (family) {
        case InputFamily::normal: return "normal";
        case InputFamily::dominant: return "dominant";
        case InputFamily::sink: return "sink";
        case InputFamily::recency: return "recency";
        case InputFamily::peaked: return "peaked";
        case InputFamily::large_v: return "large_v";
        case InputFamily::ties: return "ties";
    }
    return "?";
}

InputFamily parse_input_family(std::string_view text) {
    std::string names;
    for (const InputFamily f : kFamilies) {
        if (text == to_string(f)) return f;
        names += (names.empty() ? "" : ", ") + std::string(to_string(f));
    }
    throw std::invalid_argument("unknown input family '" + std::string(text) +
                                "' (valid: " + names + ")");
}

std::vector<InputFamily> all_input_families() { return {kFamilies.begin(), kFamilies.end()}; }

namespace detail {

void apply_family(InputFamily family, const Problem& problem, std::uint64_t seed,
                  HostInputs& in) {
    // A stream per (seed, family), apart from the draw's: the base values stay those of
    // `normal` for the same seed, whatever the family draws.
    Normals rng(seed ^ (0xD1B54A32D192ED03ull * (static_cast<std::uint64_t>(family) + 1)));
    switch (family) {
        case InputFamily::normal: return;
        case InputFamily::dominant: return dominant_or_sink(problem, rng, false, in);
        case InputFamily::sink: return dominant_or_sink(problem, rng, true, in);
        case InputFamily::recency: return recency(problem, rng, in);
        case InputFamily::peaked: return peaked(problem, in);
        case InputFamily::large_v: return large_v(in);
        case InputFamily::ties: return ties(problem, in);
    }
}

}  // namespace detail
}  // namespace moba
