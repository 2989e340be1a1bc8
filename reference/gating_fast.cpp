// Float64 gating (SEMANTICS.md §2) made fast by a rigorous fp32 filter: every past block is
// scored in fp32, and only the blocks that an error bound cannot rule out of the top k are
// rescored with dot64 and ranked by the exhaustive path's own code (gating_rows.cpp). The
// result is bitwise gating_exhaustive's; suites/test_reference_gating.cpp checks that.
//
// The bound (also SEMANTICS.md §2, "How the float64 gating is computed fast"). For a query
// row q (floats) and block b, with kbar64 the double mean, kbar32 = fl32(kbar64), s64 the
// computed dot64(q, kbar64) and s32 the fp32 dot product of q and kbar32 over Dp terms (D
// padded with zeros to the SIMD width), u = 2^-24, gamma_n = n u / (1 - n u),
// A = sum_d |q_d| |kbar64_d| <= ||q||_2 ||kbar64||_2 (Cauchy-Schwarz):
//   kbar rounding:   |kbar32_d - kbar64_d| <= u |kbar64_d| + 2^-150 (subnormal spacing / 2)
//                    => |q.kbar32 - q.kbar64| <= u A + 2^-150 sum|q_d|
//   fp32 dot:        |s32 - q.kbar32| <= gamma_Dp sum|q_d||kbar32_d| + Dp 2^-149 (any order;
//                    the second term is underflow of the products), and
//                    sum|q_d||kbar32_d| <= (1 + u) A + 2^-150 sum|q_d|
//   double dot:      |s64 - q.kbar64| <= gamma_D(2^-53) A (+ underflow, far below 2^-149)
// so |s32 - s64| <= E_b = c ||q|| ||kbar64_b|| + 2^-146 (sum|q_d| + Dp) with
// c = (gamma_Dp (1 + u) + u + gamma_D(2^-53)) (1 + 2^-10). The factor 1 + 2^-10 pays for every
// double rounding in forming E_b, lo_b = s32_b - E_b and hi_b = s32_b + E_b: each is at most
// 2^-53 (|s32_b| + E_b) <= 2^-53 (1/u + 2) E_b ~ 2^-29 E_b, because E_b >= u ||q|| ||kbar64_b||
// >= u |s64_b|. Hence lo_b <= s64_b <= hi_b for every block, as computed. If any fp32 product
// or sum overflowed, s32 is not finite; such a row (or one with NaN / Inf inputs, or a
// non-finite E) takes the exhaustive path.
//
// The filter. Let L = the k-th largest lo_b, k = taken + 1 (the selected past blocks and the
// best unselected rival). At least k blocks have s64 >= lo >= L, so the k-th largest s64 is
// >= L; a block with hi_b < L has s64_b < L and is ranked after k blocks whatever the tie
// rule. The candidates {b : hi_b >= L} therefore hold the first k blocks of the exhaustive
// ranking (score descending, index ascending), and rank_row ranks them with the same dot64
// scores and comparator: same selection, boundary_gap and boundary_magnitude, bit for bit.
// (With one E per row, this is "fp32 score >= k-th largest fp32 score - 2E".)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "reference/common.hpp"
#include "reference/gating_rows.hpp"
#include "reference/parallel.hpp"
#include "reference/reference.hpp"

namespace moba::ref {
namespace {

using detail::Shape;

constexpr int kLanes = 4;           // fp32 partial sums per dot product: one SSE2 register
// 4 x 2 tiles: 8 accumulators keep enough adds in flight, and with 2 kbar, 1 query and 1
// product register they fit SSE2's 16 (GCC 12 spilled an accumulator of 4 x 3 tiles).
constexpr int kRowTile = 4;         // query rows per micro-kernel
constexpr int kBlockTile = 2;       // kbar rows per micro-kernel
constexpr int kBlocksPerPass = 32;  // kbar rows (16 KiB at D = 128) kept in L1 across rows
constexpr int kRowsPerUnit = 32;    // query rows (group heads x tokens) sharing one kbar pass

// gamma_n = n u / (1 - n u), +inf when n u >= 1 (no bound: the row falls back).
double gamma(double n, double u) {
    return n * u < 1.0 ? n * u / (1.0 - n * u) : std::numeric_limits<double>::infinity();
}

// kbar rounded to float, head-major [Hkv, blocks, Dp] (one kv head's blocks of a sequence
// contiguous, rows zero-padded to a multiple of kLanes), and ||kbar64|| per [Hkv, blocks].
struct Kbar32 {
    int dp = 0;
    std::int64_t blocks = 0;
    std::vector<float> data;
    std::vector<double> norm;

    Kbar32(const Shape& shape, const detail::BlockMeans& means)
        : dp((shape.dim + kLanes - 1) / kLanes * kLanes), blocks(means.blocks()) {
        data.assign(shape.heads_kv * blocks * dp, 0.0f);
        norm.assign(shape.heads_kv * blocks, 0.0);
        parallel_for(shape.heads_kv * blocks, [&](std::int64_t index) {
            const int hk = static_cast<int>(index / blocks);
            const std::int64_t global = index % blocks;
            const double* k64 = means.kbar.data() + (global * shape.heads_kv + hk) * shape.dim;
            float* k32 = data.data() + index * dp;
            double sum = 0.0;
            for (int d = 0; d < shape.dim; ++d) {
                k32[d] = static_cast<float>(k64[d]);
                sum += k64[d] * k64[d];
            }
            norm[index] = std::sqrt(sum);
        });
    }
    std::int64_t index(int hk, std::int64_t global) const { return hk * blocks + global; }
};

// Four floats in one SSE2 register, through the GCC / Clang vector extension: baseline x86-64,
// no intrinsics, no -march. (Plain float acc[RB][KB][4] arrays vectorised too, but GCC 12 kept
// them on the stack: about half the speed in a micro-benchmark.)
typedef float Vec4 __attribute__((vector_size(4 * sizeof(float))));

inline Vec4 load4(const float* p) {
    Vec4 v;
    std::memcpy(&v, p, sizeof v);  // unaligned load; no aliasing questions
    return v;
}

// out[r * stride + b] = fp32 dot of q rows r < RB and kbar rows b < KB (Dp floats each), with
// kLanes partial sums per dot product, RB * KB accumulator registers.
template <int RB, int KB>
inline void score_micro(const float* q, const float* k, int dp, float* out, std::int64_t stride) {
    Vec4 acc[RB][KB] = {};
    for (int d = 0; d < dp; d += kLanes) {
        Vec4 kv[KB];
        for (int b = 0; b < KB; ++b) kv[b] = load4(k + b * dp + d);
        for (int r = 0; r < RB; ++r) {
            const Vec4 qv = load4(q + r * dp + d);
            for (int b = 0; b < KB; ++b) acc[r][b] += qv * kv[b];
        }
    }
    for (int r = 0; r < RB; ++r) {
        for (int b = 0; b < KB; ++b) {
            out[r * stride + b] = (acc[r][b][0] + acc[r][b][1]) + (acc[r][b][2] + acc[r][b][3]);
        }
    }
}

// fp32 scores of `rows` query rows (q: [rows, Dp]) against `blocks` kbar rows (k: [blocks, Dp])
// into out [rows, blocks]. A pass of kBlocksPerPass kbar rows stays in L1 while every query
// row is scored against it.
void score_tile(const float* q, int rows, const float* k, std::int64_t blocks, int dp,
                float* out) {
    // One strip of RB query rows against blocks [b0, b1), KB blocks at a time.
    auto strip = [&]<int RB>(int r, std::int64_t b0, std::int64_t b1) {
        std::int64_t b = b0;
        for (; b + kBlockTile <= b1; b += kBlockTile) {
            score_micro<RB, kBlockTile>(q + r * dp, k + b * dp, dp, out + r * blocks + b, blocks);
        }
        for (; b < b1; ++b) {
            score_micro<RB, 1>(q + r * dp, k + b * dp, dp, out + r * blocks + b, blocks);
        }
    };
    for (std::int64_t b0 = 0; b0 < blocks; b0 += kBlocksPerPass) {
        const std::int64_t b1 = std::min<std::int64_t>(b0 + kBlocksPerPass, blocks);
        int r = 0;
        for (; r + kRowTile <= rows; r += kRowTile) strip.template operator()<kRowTile>(r, b0, b1);
        for (; r < rows; ++r) strip.template operator()<1>(r, b0, b1);
    }
}

// Work unit: tokens [t0, t1) of sequence s, all in its block `own`, with every query head of
// kv head hk's group. All its rows share `own`, hence the past blocks they score.
struct Unit {
    int s, hk, own;
    std::int64_t t0, t1;
};

std::vector<Unit> make_units(const Shape& shape) {
    const int tokens = std::max(1, kRowsPerUnit / shape.group);
    std::vector<Unit> units;
    for (int s = 0; s < shape.batch(); ++s) {
        for (int hk = 0; hk < shape.heads_kv; ++hk) {
            for (std::int64_t b0 = shape.cu[s]; b0 < shape.cu[s + 1]; b0 += shape.block) {
                const std::int64_t b1 = std::min<std::int64_t>(b0 + shape.block, shape.cu[s + 1]);
                const int own = static_cast<int>((b0 - shape.cu[s]) / shape.block);
                for (std::int64_t t0 = b0; t0 < b1; t0 += tokens) {
                    units.push_back({s, hk, own, t0, std::min<std::int64_t>(t0 + tokens, b1)});
                }
            }
        }
    }
    return units;
}

struct Scratch {
    std::vector<float> q;       // the unit's query rows, [rows, Dp], zero-padded
    std::vector<float> s32;     // their fp32 scores, [rows, own]
    std::vector<double> lowest; // min-heap of the k largest lo_b of one row
    detail::RankScratch rank;
};

// The bound's constants for one problem: E_b = row_factor * ||kbar64_b|| + floor.
struct Bound {
    double c;
    int dp;
    Bound(int dim, int padded)
        : c((gamma(padded, 0x1p-24) * (1.0 + 0x1p-24) + 0x1p-24 + gamma(dim, 0x1p-53)) *
            (1.0 + 0x1p-10)),
          dp(padded) {}
};

// Ranks one row from its fp32 scores (s32[0, own)); false when the filter cannot be trusted.
bool filtered_row(const Shape& shape, const detail::BlockMeans& means, const Kbar32& k32,
                  const Bound& bound, const detail::GatingRow& row, const float* s32,
                  Scratch& scratch, GatingResult& result) {
    double q2 = 0.0, q1 = 0.0;
    for (int d = 0; d < shape.dim; ++d) {
        q2 += static_cast<double>(row.q[d]) * row.q[d];
        q1 += std::fabs(static_cast<double>(row.q[d]));
    }
    const double row_factor = bound.c * std::sqrt(q2);
    const double floor = 0x1p-146 * (q1 + bound.dp);
    const int hk = row.h / shape.group;
    const double* norm = k32.norm.data() + k32.index(hk, means.first[row.s]);
    const auto error = [&](int b) { return row_factor * norm[b] + floor; };

    // Every E_b is finite when the row's factors are and every s32 is: a non-finite kbar64
    // (hence norm) makes kbar32 non-finite, and then its s32 too (0 * inf is NaN).
    if (!std::isfinite(row_factor) || !std::isfinite(floor)) return false;
    int nonfinite = 0;  // an OR over the row, which the compiler vectorises
    for (int b = 0; b < row.own; ++b) {
        nonfinite |= !(std::fabs(s32[b]) <= std::numeric_limits<float>::max());
    }
    if (nonfinite) return false;

    // L = the k-th largest lo_b, k = taken + 1 <= own, through a min-heap of the k largest so
    // far. lo_b <= s32_b, so a block whose s32 is not above the heap's least skips the rest.
    const std::size_t k = static_cast<std::size_t>(row.taken) + 1;
    std::vector<double>& heap = scratch.lowest;
    heap.clear();
    double least = -std::numeric_limits<double>::infinity();
    for (int b = 0; b < row.own; ++b) {
        if (!(static_cast<double>(s32[b]) > least)) continue;
        const double lo = static_cast<double>(s32[b]) - error(b);
        if (heap.size() < k) {
            heap.push_back(lo);
            std::push_heap(heap.begin(), heap.end(), std::greater<>());
            if (heap.size() == k) least = heap.front();
        } else if (lo > least) {
            std::pop_heap(heap.begin(), heap.end(), std::greater<>());
            heap.back() = lo;
            std::push_heap(heap.begin(), heap.end(), std::greater<>());
            least = heap.front();
        }
    }
    const double threshold = heap.front();

    detail::RankScratch& rank = scratch.rank;
    rank.blocks.clear();
    rank.score.clear();
    for (int b = 0; b < row.own; ++b) {
        if (static_cast<double>(s32[b]) + error(b) >= threshold) {
            rank.blocks.push_back(b);
            rank.score.push_back(
                detail::dot64(row.q, means.kbar.data() + means.row(row.s, b, hk), shape.dim));
        }
    }
    detail::rank_row(shape, means, row, rank, result);
    return true;
}

}  // namespace

GatingResult gating(const Problem& problem, const HostInputs& inputs) {
    detail::check_inputs(problem, inputs, false);
    const Shape shape(problem);
    const detail::BlockMeans means = detail::block_means(shape, inputs);
    const Kbar32 k32(shape, means);
    const Bound bound(shape.dim, k32.dp);
    const std::vector<Unit> units = make_units(shape);
    GatingResult result = detail::empty_gating_result(shape);

    parallel_for_ranges(static_cast<std::int64_t>(units.size()), [&](std::int64_t begin,
                                                                     std::int64_t end) {
        Scratch scratch;
        for (std::int64_t u = begin; u < end; ++u) {
            const Unit& unit = units[u];
            const int taken = std::min(problem.topk - 1, unit.own);
            const int rows = static_cast<int>(unit.t1 - unit.t0) * shape.group;
            auto row_of = [&](int r) {
                const std::int64_t t = unit.t0 + r / shape.group;
                const int h = unit.hk * shape.group + r % shape.group;
                return detail::GatingRow{inputs.q.data() + shape.q_row(t, h), t, h, unit.s,
                                         unit.own, taken};
            };
            if (taken == 0 || taken == unit.own) {
                // Nothing to rank: the own block alone, or every block up to it.
                for (int r = 0; r < rows; ++r) {
                    const detail::GatingRow row = row_of(r);
                    std::int32_t* sel = result.selection.blocks.data() + shape.sel_row(row.t, row.h);
                    for (int j = 0; j <= taken; ++j) sel[j] = taken == 0 ? unit.own : j;
                }
                continue;
            }
            scratch.q.assign(static_cast<std::size_t>(rows) * k32.dp, 0.0f);
            for (int r = 0; r < rows; ++r) {
                std::copy_n(row_of(r).q, shape.dim, scratch.q.data() + r * k32.dp);
            }
            scratch.s32.resize(static_cast<std::size_t>(rows) * unit.own);
            const float* k = k32.data.data() + k32.index(unit.hk, means.first[unit.s]) * k32.dp;
            score_tile(scratch.q.data(), rows, k, unit.own, k32.dp, scratch.s32.data());
            for (int r = 0; r < rows; ++r) {
                const detail::GatingRow row = row_of(r);
                if (!filtered_row(shape, means, k32, bound, row,
                                  scratch.s32.data() + static_cast<std::int64_t>(r) * unit.own,
                                  scratch, result)) {
                    detail::exhaustive_row(shape, means, row, scratch.rank, result);
                }
            }
        }
    });
    return result;
}

}  // namespace moba::ref
