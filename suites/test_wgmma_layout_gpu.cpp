// wgmma_dense building blocks on the GPU, in isolation, then the whole kernel on small shapes:
//   - S = Q K^T through the kernel's TMA maps, 128-byte swizzle, K-major descriptors and
//     accumulator layout (probe::qk), both consumer warpgroups' row halves;
//   - S = Q K^T with Q gathered row by row by cp.async into the same swizzled layout (the sparse
//     wave kernel's Q load, probe::gathered_qk): repeated, out-of-order and zero rows;
//   - O = P V through the register-A fragments and the transposed (MN-major) V descriptor
//     (probe::pv);
//   - dense_forward against a float64 causal reference on a varlen GQA batch whose lengths hit
//     partial, exact and single-row tiles; rows and lse are pre-filled with NaN so a row the
//     kernel fails to write fails the test.
// Inputs are multiples of 1/64 (exact in bf16 and fp16) so the probes' fp32 sums are exact and
// any layout error shows as a mismatch, not as rounding noise.
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "gpu_test_util.hpp"
#include "core/cuda_check.hpp"
#include "kernels/wgmma/probe.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba {
namespace {

constexpr int kRows = wgmma::probe::kRows;

// Values k / 64, |k| <= 64 (or 0 <= k <= 64 for probabilities): exact in bf16 and fp16.
std::vector<float> exact_values(std::size_t count, std::uint32_t seed, bool non_negative = false) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> dist(non_negative ? 0 : -64, 64);
    std::vector<float> v(count);
    for (auto& x : v) x = static_cast<float>(dist(rng)) / 64.0f;
    return v;
}

// Bits of a value that is exactly representable (zero or a normal number of both types).
std::uint16_t to_bits(DType dtype, float x) {
    const auto bits = std::bit_cast<std::uint32_t>(x);
    if (dtype == DType::bf16) return static_cast<std::uint16_t>(bits >> 16);
    if (x == 0.0f) return static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t sign = (bits >> 16) & 0x8000u;
    const std::uint32_t exponent = ((bits >> 23) & 0xFFu) - 127u + 15u;
    const std::uint32_t mantissa = (bits >> 13) & 0x3FFu;
    return static_cast<std::uint16_t>(sign | (exponent << 10) | mantissa);
}

float from_bits(DType dtype, std::uint16_t h) {
    if (dtype == DType::bf16) return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
    const std::uint32_t sign = (h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1Fu;
    const std::uint32_t mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
    if (exponent == 0) {  // zero or subnormal
        const float value = std::ldexp(static_cast<float>(mantissa), -24);
        return sign != 0 ? -value : value;
    }
    return std::bit_cast<float>(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
}

struct Config {
    DType dtype;
    int head_dim;
};
std::string name(const Config& c) { return fmt::format("{}_D{}", to_string(c.dtype), c.head_dim); }
const Config kConfigs[] = {{DType::bf16, 128}, {DType::f16, 128}, {DType::bf16, 64}, {DType::f16, 64}};

// Counts entries off by more than tol and describes the first few.
struct Mismatches {
    int count = 0;
    std::string first;
    void check(double got, double want, double tol, const std::string& where) {
        if (std::abs(got - want) <= tol) return;  // NaN fails here too
        if (++count <= 5) first += fmt::format("  {}: got {} want {}\n", where, got, want);
    }
};

TEST(WgmmaLayout, QkProductMatchesCpu) {
    MOBA_REQUIRE_GPU();
    for (const Config& c : kConfigs) {
        const int d = c.head_dim;
        const auto q = exact_values(static_cast<std::size_t>(kRows) * d, 1);
        const auto k = exact_values(static_cast<std::size_t>(kRows) * d, 2);
        const auto s = wgmma::probe::qk(c.dtype, d, q, k);
        ASSERT_EQ(s.size(), static_cast<std::size_t>(kRows) * kRows);
        Mismatches bad;
        for (int i = 0; i < kRows; ++i)
            for (int j = 0; j < kRows; ++j) {
                double want = 0.0;
                for (int e = 0; e < d; ++e) want += static_cast<double>(q[i * d + e]) * k[j * d + e];
                bad.check(s[i * kRows + j], want, 1e-6, fmt::format("S[{}][{}]", i, j));
            }
        EXPECT_EQ(bad.count, 0) << name(c) << "\n" << bad.first;
    }
}

TEST(WgmmaLayout, GatheredQkProductMatchesCpu) {
    MOBA_REQUIRE_GPU();
    constexpr int kSource = 300;
    // Out of order, repeated, and zero rows (-1), as an item's rows are: any tokens and heads.
    std::vector<int> rows(kRows);
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> pick(0, kSource - 1);
    for (int r = 0; r < kRows; ++r) rows[r] = r % 7 == 3 || r >= 120 ? -1 : pick(rng);
    rows[0] = kSource - 1;
    rows[1] = 0;
    for (const Config& c : kConfigs) {
        const int d = c.head_dim;
        const auto q = exact_values(static_cast<std::size_t>(kSource) * d, 8);
        const auto k = exact_values(static_cast<std::size_t>(kRows) * d, 9);
        const auto s = wgmma::probe::gathered_qk(c.dtype, d, q, rows, k);
        ASSERT_EQ(s.size(), static_cast<std::size_t>(kRows) * kRows);
        Mismatches bad;
        for (int i = 0; i < kRows; ++i)
            for (int j = 0; j < kRows; ++j) {
                double want = 0.0;
                if (rows[i] >= 0)
                    for (int e = 0; e < d; ++e)
                        want += static_cast<double>(q[static_cast<std::size_t>(rows[i]) * d + e]) * k[j * d + e];
                bad.check(s[i * kRows + j], want, 1e-6, fmt::format("S[{}][{}] (source row {})", i, j, rows[i]));
            }
        EXPECT_EQ(bad.count, 0) << name(c) << "\n" << bad.first;
    }
}

TEST(WgmmaLayout, PvProductMatchesCpu) {
    MOBA_REQUIRE_GPU();
    for (const Config& c : kConfigs) {
        const int d = c.head_dim;
        const auto p = exact_values(static_cast<std::size_t>(kRows) * kRows, 3, true);
        const auto v = exact_values(static_cast<std::size_t>(kRows) * d, 4);
        const auto o = wgmma::probe::pv(c.dtype, d, p, v);
        ASSERT_EQ(o.size(), static_cast<std::size_t>(kRows) * d);
        Mismatches bad;
        for (int i = 0; i < kRows; ++i)
            for (int e = 0; e < d; ++e) {
                double want = 0.0;
                for (int j = 0; j < kRows; ++j) want += static_cast<double>(p[i * kRows + j]) * v[j * d + e];
                bad.check(o[i * d + e], want, 1e-6, fmt::format("O[{}][{}]", i, e));
            }
        EXPECT_EQ(bad.count, 0) << name(c) << "\n" << bad.first;
    }
}

TEST(WgmmaLayout, RefusesWhatItDoesNotImplement) {
    MOBA_REQUIRE_GPU();
    Problem p;
    p.seqlens = {256};
    p.heads_q = 2;
    p.heads_kv = 1;
    p.head_dim = 128;
    p.block = 64;
    p.topk = 2;
    EXPECT_TRUE(wgmma::dense_can_implement(p).ok) << wgmma::dense_can_implement(p).reason;
    p.dtype = DType::f32;
    EXPECT_FALSE(wgmma::dense_can_implement(p).ok);
    p.dtype = DType::bf16;
    p.head_dim = 96;
    EXPECT_FALSE(wgmma::dense_can_implement(p).ok);
}

struct DeviceBytes {
    void* ptr = nullptr;
    explicit DeviceBytes(std::size_t bytes) { MOBA_CUDA_CALL(cudaMalloc(&ptr, bytes)); }
    ~DeviceBytes() { (void)cudaFree(ptr); }
    DeviceBytes(const DeviceBytes&) = delete;
    DeviceBytes& operator=(const DeviceBytes&) = delete;
};

template <typename V>
void upload(DeviceBytes& dst, const std::vector<V>& src) {
    MOBA_CUDA_CALL(cudaMemcpy(dst.ptr, src.data(), src.size() * sizeof(V), cudaMemcpyHostToDevice));
}

TEST(WgmmaLayout, DenseForwardMatchesFloat64Reference) {
    MOBA_REQUIRE_GPU();
    for (const Config& c : kConfigs) {
        Problem p;
        // Partial last tile, one row past a tile, a single row, an exact tile, several tiles.
        p.seqlens = {300, 129, 1, 128, 520};
        p.heads_q = 4;
        p.heads_kv = 2;
        p.head_dim = c.head_dim;
        p.block = 64;
        p.topk = 2;
        p.dtype = c.dtype;
        ASSERT_TRUE(wgmma::dense_can_implement(p).ok);
        const int d = p.head_dim;
        const int hq = p.heads_q;
        const int hkv = p.heads_kv;
        const auto total = static_cast<std::size_t>(p.total_tokens());
        const auto q = exact_values(total * hq * d, 5);
        const auto k = exact_values(total * hkv * d, 6);
        const auto v = exact_values(total * hkv * d, 7);
        auto bits = [&](const std::vector<float>& x) {
            std::vector<std::uint16_t> out(x.size());
            for (std::size_t i = 0; i < x.size(); ++i) out[i] = to_bits(c.dtype, x[i]);
            return out;
        };
        DeviceBytes dq(q.size() * 2), dk(k.size() * 2), dv(v.size() * 2), dout(q.size() * 2);
        DeviceBytes dlse(total * hq * sizeof(float)), dcu(sizeof(std::int32_t) * (p.seqlens.size() + 1));
        upload(dq, bits(q));
        upload(dk, bits(k));
        upload(dv, bits(v));
        upload(dcu, p.cu_seqlens());
        MOBA_CUDA_CALL(cudaMemset(dout.ptr, 0xFF, q.size() * 2));  // NaN in bf16 and fp16
        MOBA_CUDA_CALL(cudaMemset(dlse.ptr, 0xFF, total * hq * sizeof(float)));  // NaN

        AttentionArgs args{};
        args.problem = p;
        args.cu_seqlens = static_cast<const std::int32_t*>(dcu.ptr);
        args.q = dq.ptr;
        args.k = dk.ptr;
        args.v = dv.ptr;
        args.out = dout.ptr;
        args.lse = static_cast<float*>(dlse.ptr);
        args.stream = nullptr;
        wgmma::dense_forward(args);
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
        std::vector<std::uint16_t> out_bits(q.size());
        std::vector<float> lse(total * hq);
        MOBA_CUDA_CALL(cudaMemcpy(out_bits.data(), dout.ptr, out_bits.size() * 2, cudaMemcpyDeviceToHost));
        MOBA_CUDA_CALL(cudaMemcpy(lse.data(), dlse.ptr, lse.size() * sizeof(float), cudaMemcpyDeviceToHost));

        // P is rounded to the dtype before P V: about 2^-9 (bf16) relative per term.
        const double out_tol = c.dtype == DType::bf16 ? 1.5e-2 : 4e-3;
        const double scale = p.scale();
        const auto cu = p.cu_seqlens();
        Mismatches bad_out;
        Mismatches bad_lse;
        std::vector<double> w;
        for (std::size_t b = 0; b + 1 < cu.size(); ++b)
            for (int h = 0; h < hq; ++h) {
                const int hk = h / p.group();
                for (int i = cu[b]; i < cu[b + 1]; ++i) {
                    const float* qi = &q[(static_cast<std::size_t>(i) * hq + h) * d];
                    w.assign(static_cast<std::size_t>(i - cu[b] + 1), 0.0);
                    double mx = -INFINITY;
                    for (int j = cu[b]; j <= i; ++j) {
                        const float* kj = &k[(static_cast<std::size_t>(j) * hkv + hk) * d];
                        double dot = 0.0;
                        for (int e = 0; e < d; ++e) dot += static_cast<double>(qi[e]) * kj[e];
                        w[j - cu[b]] = dot * scale;
                        mx = std::max(mx, dot * scale);
                    }
                    double sum = 0.0;
                    for (double& x : w) sum += (x = std::exp(x - mx));
                    const std::string row = fmt::format("{} token {} head {}", name(c), i, h);
                    bad_lse.check(lse[static_cast<std::size_t>(h) * total + i], mx + std::log(sum), 2e-3, row);
                    for (int e = 0; e < d; ++e) {
                        double want = 0.0;
                        for (int j = cu[b]; j <= i; ++j)
                            want += w[j - cu[b]] * v[(static_cast<std::size_t>(j) * hkv + hk) * d + e];
                        want /= sum;
                        const float got = from_bits(c.dtype, out_bits[(static_cast<std::size_t>(i) * hq + h) * d + e]);
                        bad_out.check(got, want, out_tol + 1e-2 * std::abs(want), row + fmt::format(" dim {}", e));
                    }
                }
            }
        EXPECT_EQ(bad_out.count, 0) << name(c) << " out\n" << bad_out.first;
        EXPECT_EQ(bad_lse.count, 0) << name(c) << " lse\n" << bad_lse.first;
    }
}

}  // namespace
}  // namespace moba
