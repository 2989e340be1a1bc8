// Internal to reference/: shape checks, sequence lookup and the inner products the float64
// reference and the fp32 baseline share. Nothing here knows about masks or softmax.
#pragma once

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"

namespace moba::ref::detail {

// The problem's shape, flattened for index arithmetic.
struct Shape {
    std::int64_t total;
    int heads_q, heads_kv, dim, group, block, slots;
    double scale;
    std::vector<std::int32_t> cu;  // [B+1]

    explicit Shape(const Problem& problem)
        : total(problem.total_tokens()),
          heads_q(problem.heads_q),
          heads_kv(problem.heads_kv),
          dim(problem.head_dim),
          group(problem.group()),
          block(problem.block),
          slots(problem.sel_slots()),
          scale(problem.scale()),
          cu(problem.cu_seqlens()) {}

    int batch() const { return static_cast<int>(cu.size()) - 1; }
    std::int64_t q_row(std::int64_t token, int head) const {  // offset into [total, Hq, D]
        return (token * heads_q + head) * dim;
    }
    std::int64_t kv_row(std::int64_t token, int head) const {  // offset into [total, Hkv, D]
        return (token * heads_kv + head) * dim;
    }
    std::int64_t sel_row(std::int64_t token, int head) const {  // [total, Hq, slots]
        return (token * heads_q + head) * slots;
    }
    std::int64_t lse_index(std::int64_t token, int head) const {  // [Hq, total]
        return head * total + token;
    }
    // Index of the sequence holding packed token `token`.
    int sequence_of(std::int64_t token) const {
        const auto it = std::upper_bound(cu.begin(), cu.end(), token);
        return static_cast<int>(it - cu.begin()) - 1;
    }
};

inline void check_size(const char* what, std::size_t got, std::int64_t want) {
    if (static_cast<std::int64_t>(got) != want) {
        throw std::invalid_argument(std::string(what) + " has " + std::to_string(got) +
                                    " elements, the problem needs " + std::to_string(want));
    }
}

inline void check_inputs(const Problem& problem, const HostInputs& inputs, bool with_dout) {
    problem.validate();
    check_size("q", inputs.q.size(), problem.q_elems());
    check_size("k", inputs.k.size(), problem.kv_elems());
    check_size("v", inputs.v.size(), problem.kv_elems());
    if (with_dout) check_size("dout", inputs.dout.size(), problem.q_elems());
}

// One selection row of (token t, head h), own block `own`: strictly ascending local block
// indices <= own, then -1 padding, the own block present.
inline void check_selection_row(const Shape& shape, const std::int32_t* row, std::int64_t t, int h,
                                std::int32_t own) {
    std::int32_t last = -1;
    bool padding = false;
    for (int slot = 0; slot < shape.slots; ++slot) {
        const std::int32_t b = row[slot];
        const bool ok = padding ? b == -1 : (b == -1 || (b > last && b <= own));
        if (!ok) {
            throw std::invalid_argument(
                "selection of token " + std::to_string(t) + ", head " + std::to_string(h) +
                " is not ascending blocks <= own block " + std::to_string(own) +
                " then -1 padding (slot " + std::to_string(slot) + " = " + std::to_string(b) + ")");
        }
        padding = b == -1;
        if (!padding) last = b;
    }
    if (last != own) {
        throw std::invalid_argument("selection of token " + std::to_string(t) + ", head " +
                                    std::to_string(h) + " lacks its own block " +
                                    std::to_string(own));
    }
}

// A selection must be what gating produces: per (token, head) strictly ascending local block
// indices, then -1 padding; the own block present, no future block.
inline void check_selection(const Shape& shape, const Selection& sel) {
    if (sel.slots != shape.slots) {
        throw std::invalid_argument("selection has " + std::to_string(sel.slots) +
                                    " slots, the problem needs " + std::to_string(shape.slots));
    }
    check_size("selection", sel.blocks.size(), shape.total * shape.heads_q * shape.slots);
    for (int s = 0; s < shape.batch(); ++s) {
        for (std::int64_t t = shape.cu[s]; t < shape.cu[s + 1]; ++t) {
            const std::int32_t own = static_cast<std::int32_t>((t - shape.cu[s]) / shape.block);
            for (int h = 0; h < shape.heads_q; ++h) {
                check_selection_row(shape, sel.blocks.data() + shape.sel_row(t, h), t, h, own);
            }
        }
    }
}

// A tensor [total, heads, D] copied head-major, [heads, total, D], so that the rows of one
// head are contiguous: the loops here walk one head at a time, and a strided walk over a long
// sequence costs a TLB miss per row (3x slower forward at L = 16K, 4 kv heads).
class HeadMajor {
public:
    HeadMajor(const std::vector<float>& x, std::int64_t total, int heads, int dim)
        : total_(total), dim_(dim), data_(x.size()) {
        if (x.empty()) return;  // an absent tensor (dout of a forward pass)
        for (std::int64_t t = 0; t < total; ++t) {
            for (int h = 0; h < heads; ++h) {
                std::copy_n(x.data() + (t * heads + h) * dim, dim,
                            data_.data() + (h * total + t) * dim);
            }
        }
    }
    const float* row(std::int64_t token, int head) const {
        return data_.data() + (head * total_ + token) * dim_;
    }

private:
    std::int64_t total_;
    int dim_;
    std::vector<float> data_;
};

// The inputs head-major: q, dout [Hq, total, D], k, v [Hkv, total, D]. dout is left empty
// for a forward pass.
struct HeadMajorInputs {
    HeadMajor q, k, v, dout;
    HeadMajorInputs(const Shape& shape, const HostInputs& in, bool with_dout)
        : q(in.q, shape.total, shape.heads_q, shape.dim),
          k(in.k, shape.total, shape.heads_kv, shape.dim),
          v(in.v, shape.total, shape.heads_kv, shape.dim),
          dout(with_dout ? in.dout : std::vector<float>{}, shape.total, shape.heads_q, shape.dim) {}
};

// Calls visit(j) for every key a query at local position i attends, ascending: the blocks
// of its selection row clipped to the causal bound j <= i.
template <class F>
void for_each_key(const Shape& shape, const std::int32_t* sel_row, std::int64_t i, F&& visit) {
    for (int slot = 0; slot < shape.slots && sel_row[slot] >= 0; ++slot) {
        const std::int64_t j0 = std::int64_t{sel_row[slot]} * shape.block;
        const std::int64_t j1 = std::min(j0 + shape.block, i + 1);
        for (std::int64_t j = j0; j < j1; ++j) visit(j);
    }
}

// A run of consecutive keys of one sequence and one kv head, inside one block: the unit of
// work of the dk/dv passes (every query that attends one of its keys attends its block).
struct KeyTile {
    int seq, head_kv;
    std::int64_t j0, j1;  // local key range [j0, j1)
};
inline std::vector<KeyTile> key_tiles(const Shape& shape, int keys_per_tile) {
    std::vector<KeyTile> tiles;
    for (int s = 0; s < shape.batch(); ++s) {
        const std::int64_t len = shape.cu[s + 1] - shape.cu[s];
        for (int hk = 0; hk < shape.heads_kv; ++hk) {
            for (std::int64_t b0 = 0; b0 < len; b0 += shape.block) {
                const std::int64_t b1 = std::min<std::int64_t>(b0 + shape.block, len);
                for (std::int64_t j0 = b0; j0 < b1; j0 += keys_per_tile) {
                    tiles.push_back({s, hk, j0, std::min<std::int64_t>(j0 + keys_per_tile, b1)});
                }
            }
        }
    }
    return tiles;
}

// Whether block b is in a selection row (ascending, -1 padded).
inline bool selects(const std::int32_t* row, int slots, std::int32_t b) {
    for (int slot = 0; slot < slots && row[slot] >= 0 && row[slot] <= b; ++slot) {
        if (row[slot] == b) return true;
    }
    return false;
}

// float64 inner products. Products of two floats are exact in double; four interleaved
// partial sums (lane d mod 4) keep the adds independent, combined as (0+1)+(2+3).
template <class A, class B>
inline double dot64(const A* a, const B* b, int n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        s0 += static_cast<double>(a[d]) * static_cast<double>(b[d]);
        s1 += static_cast<double>(a[d + 1]) * static_cast<double>(b[d + 1]);
        s2 += static_cast<double>(a[d + 2]) * static_cast<double>(b[d + 2]);
        s3 += static_cast<double>(a[d + 3]) * static_cast<double>(b[d + 3]);
    }
    for (; d < n; ++d) s0 += static_cast<double>(a[d]) * static_cast<double>(b[d]);
    return (s0 + s1) + (s2 + s3);
}

// y += a * x over n elements.
template <class X>
inline void axpy64(double* y, double a, const X* x, int n) {
    for (int d = 0; d < n; ++d) y[d] += a * static_cast<double>(x[d]);
}

// fp32 inner product as a plain SIMD implementation computes it: eight interleaved partial
// sums (lane d mod 8), combined pairwise ((0+4)+(2+6)) + ((1+5)+(3+7)).
inline float dot32(const float* a, const float* b, int n) {
    float s[8] = {};
    int d = 0;
    for (; d + 8 <= n; d += 8) {
        for (int l = 0; l < 8; ++l) s[l] += a[d + l] * b[d + l];
    }
    for (int l = 0; d < n && l < 8; ++d, ++l) s[l] += a[d] * b[d];  // tail: fewer than 8
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// x rounded toward zero to fp32 (what the tensor cores do when they fold a step into the
// fp32 accumulator).
inline float to_float_toward_zero(double x) {
    float f = static_cast<float>(x);  // nearest
    if (std::fabs(static_cast<double>(f)) > std::fabs(x)) {  // one step back toward zero
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        --bits;
        std::memcpy(&f, &bits, sizeof f);
    }
    return f;
}

// fp32 inner product as a bf16/fp16 tensor-core MMA (fp32 accumulate) computes it, the model of
// SEMANTICS.md §5.1: the products of two 16-bit values are exact in fp32; per k-step of 16
// consecutive elements the accumulator and the step's 16 products are summed (here in double,
// exact but for terms 2^53 apart) and the sum is rounded toward zero to fp32. Measured on an
// H200 against mma.sync and cuBLAS (harness/tools/mma_accuracy.cu, kernels/NOTES.md): equal
// bits on 92% of length-128 dot products, max and RMS error within 2% and 7% of the hardware's,
// and 2.4x the RMS error of dot32, which no tensor-core kernel can match.
inline float dot_tc32(const float* a, const float* b, int n) {
    constexpr int kStep = 16;
    float acc = 0.0f;
    for (int d0 = 0; d0 < n; d0 += kStep) {
        // Products of 16-bit values are exact in float; a tree of exact sums in double (it
        // vectorizes, and while the sum is exact any order gives the same value).
        double p[kStep];
        if (n - d0 >= kStep) {
            float f[kStep];
            for (int i = 0; i < kStep; ++i) f[i] = a[d0 + i] * b[d0 + i];
            for (int i = 0; i < kStep; ++i) p[i] = static_cast<double>(f[i]);
        } else {
            for (int i = 0; i < kStep; ++i)
                p[i] = d0 + i < n ? static_cast<double>(a[d0 + i]) * static_cast<double>(b[d0 + i]) : 0.0;
        }
        for (int width = kStep / 2; width > 0; width /= 2)
            for (int i = 0; i < width; ++i) p[i] += p[i + width];
        acc = to_float_toward_zero(static_cast<double>(acc) + p[0]);
    }
    return acc;
}

// The dot products a tensor-core implementation computes in MMAs (scores q.k and dP = dout.v):
// the tensor-core model for 16-bit inputs, dot32 for fp32 (no MMA of fp32 inputs is modelled).
inline float dot_mma(DType dtype, const float* a, const float* b, int n) {
    return dtype == DType::f32 ? dot32(a, b, n) : dot_tc32(a, b, n);
}

}  // namespace moba::ref::detail
