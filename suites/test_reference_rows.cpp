// The forward of a subset of query rows (forward_rows, baseline_forward_rows) against the
// rows of the full-pass functions: the float64 rows to 1e-12 of attention_forward and
// full_attention_forward, the baseline rows bitwise equal to baseline_forward's (same fp32
// operations in the same order). Tokens are drawn at random, shuffled, with a duplicate and
// every sequence's first and last token; malformed inputs are refused; a 262144-token
// sequence exercises the large-index path.
#include <gtest/gtest.h>

#include "test_util.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/inputs.hpp"
#include "reference/reference.hpp"

namespace moba::ref {
namespace {

using test::make_problem;

// `count` random tokens, plus the first and last token of every sequence and one duplicate,
// shuffled.
std::vector<std::int64_t> pick_tokens(const Problem& p, int count, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::int64_t> any(0, p.total_tokens() - 1);
    std::vector<std::int64_t> tokens;
    for (int c = 0; c < count; ++c) tokens.push_back(any(rng));
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    for (int s = 0; s < p.batch(); ++s) {
        tokens.push_back(cu[s]);
        tokens.push_back(cu[s + 1] - 1);
    }
    tokens.push_back(tokens.front());
    std::shuffle(tokens.begin(), tokens.end(), rng);
    return tokens;
}

// Row inputs for `tokens`: their q rows and, unless `sel` is null, their selection rows.
RowInputs gather(const Problem& p, const HostInputs& in, const Selection* sel,
                 std::vector<std::int64_t> tokens) {
    RowInputs rows;
    rows.tokens = std::move(tokens);
    rows.k = &in.k;
    rows.v = &in.v;
    const std::int64_t width = std::int64_t{p.heads_q} * p.head_dim;
    for (std::int64_t t : rows.tokens) {
        rows.q_rows.insert(rows.q_rows.end(), in.q.begin() + t * width,
                           in.q.begin() + (t + 1) * width);
    }
    if (sel != nullptr) {
        rows.sel_rows.slots = sel->slots;
        const std::int64_t sel_width = std::int64_t{p.heads_q} * sel->slots;
        for (std::int64_t t : rows.tokens) {
            rows.sel_rows.blocks.insert(rows.sel_rows.blocks.end(),
                                        sel->blocks.begin() + t * sel_width,
                                        sel->blocks.begin() + (t + 1) * sel_width);
        }
    }
    return rows;
}

// The rows `tokens` of full-pass outputs, in the rows' layouts: out [T, Hq, D], lse [Hq, T].
template <class Out>
Out pick_rows(const Problem& p, const Out& full, const std::vector<std::int64_t>& tokens) {
    const auto count = static_cast<std::int64_t>(tokens.size());
    const std::int64_t width = std::int64_t{p.heads_q} * p.head_dim;
    Out rows;
    for (std::int64_t t : tokens) {
        rows.out.insert(rows.out.end(), full.out.begin() + t * width,
                        full.out.begin() + (t + 1) * width);
    }
    rows.lse.resize(count * p.heads_q);
    for (int h = 0; h < p.heads_q; ++h) {
        for (std::int64_t r = 0; r < count; ++r) {
            rows.lse[h * count + r] = full.lse[h * p.total_tokens() + tokens[r]];
        }
    }
    return rows;
}

template <class A>
double max_abs(const std::vector<A>& a) {
    double m = 0.0;
    for (A x : a) m = std::max(m, std::fabs(static_cast<double>(x)));
    return m;
}

// max |a - b| / max |b|; infinite when the sizes differ.
double rel_max(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return HUGE_VAL;
    double m = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m / max_abs(b);
}

void expect_close(const Forward& rows, const Forward& want, double tol, const char* what) {
    EXPECT_GT(max_abs(want.out), 0.0) << what;
    EXPECT_LT(rel_max(rows.out, want.out), tol) << what << ": out";
    EXPECT_LT(rel_max(rows.lse, want.lse), tol) << what << ": lse";
}

// Number of elements whose bits differ (the sizes must agree).
std::int64_t bit_mismatches(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    if (a.size() != b.size()) return -1;
    std::int64_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        n += std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i]);
    }
    return n;
}

void expect_bitwise(const ForwardOutput& rows, const ForwardOutput& want, const char* what) {
    EXPECT_GT(max_abs(want.out), 0.0) << what;
    EXPECT_EQ(bit_mismatches(rows.out, want.out), 0) << what << ": out";
    EXPECT_EQ(bit_mismatches(rows.lse, want.lse), 0) << what << ": lse";
}

// ---- 1. Rows equal the full pass's rows --------------------------------------------------

struct RowCase {
    std::vector<int> seqlens;
    int heads_q, heads_kv, dim, block, topk;
    DType dtype;
};

void PrintTo(const RowCase& c, std::ostream* os) {
    std::string lengths;
    for (int len : c.seqlens) {
        if (!lengths.empty()) lengths += ',';
        lengths += std::to_string(len);
    }
    *os << "seqlens " << lengths << " Hq " << c.heads_q << " Hkv " << c.heads_kv << " D " << c.dim
        << " block " << c.block << " topk " << c.topk << " " << to_string(c.dtype);
}

class RowsMatch : public ::testing::TestWithParam<RowCase> {
protected:
    Problem problem() const {
        const RowCase& c = GetParam();
        return make_problem(c.seqlens, c.heads_q, c.heads_kv, c.dim, c.block, c.topk, c.dtype);
    }
};

TEST_P(RowsMatch, SelectionRowsEqualAttentionForwardRows) {
    const Problem p = problem();
    const HostInputs in = make_inputs(p, 2024);
    const Selection sel = gating(p, in).selection;
    const std::vector<std::int64_t> tokens = pick_tokens(p, 24, 7);
    const RowInputs rows = gather(p, in, &sel, tokens);
    expect_close(forward_rows(p, rows), pick_rows(p, attention_forward(p, in, sel), tokens), 1e-12,
                 "attention_forward");
    expect_bitwise(baseline_forward_rows(p, rows),
                   pick_rows(p, baseline_forward(p, in, sel), tokens), "baseline_forward");
}

TEST_P(RowsMatch, FullCausalRowsEqualFullAttentionRows) {
    const Problem p = problem();
    const HostInputs in = make_inputs(p, 2025);
    const std::vector<std::int64_t> tokens = pick_tokens(p, 24, 8);
    const RowInputs rows = gather(p, in, nullptr, tokens);
    const Forward got = forward_rows(p, rows);
    expect_close(got, pick_rows(p, full_attention_forward(p, in), tokens), 1e-12,
                 "full_attention_forward");
    // The same rows through the selection path: every block selected (topk >= n).
    Problem dense = p;
    dense.topk = p.max_blocks();
    const Selection all = full_selection(dense);
    expect_close(got, pick_rows(p, attention_forward(dense, in, all), tokens), 1e-12,
                 "attention_forward, full selection");
    expect_bitwise(baseline_forward_rows(p, rows),
                   pick_rows(p, baseline_forward(dense, in, all), tokens),
                   "baseline_forward, full selection");
}

// Rows are split into work items of 4096 bytes of k per key (kv heads 10 + 2 at D = 96;
// one kv head each at D = 1100): the last three cases cross those splits.
INSTANTIATE_TEST_SUITE_P(
    Shapes, RowsMatch,
    ::testing::Values(RowCase{{37, 64, 5}, 4, 2, 16, 8, 3, DType::bf16},      // GQA
                      RowCase{{1, 50, 17, 1}, 3, 1, 8, 4, 1, DType::f16},     // MQA, k = 1
                      RowCase{{33, 9}, 2, 2, 12, 8, 8, DType::f32},           // k >= n
                      RowCase{{1, 23, 1, 40}, 4, 1, 32, 16, 2, DType::bf16},  // partial
                      RowCase{{300, 77}, 4, 2, 128, 32, 3, DType::f16},       // D 128
                      RowCase{{130, 2, 61}, 2, 1, 20, 16, 3, DType::f32},     // D % 8 != 0
                      RowCase{{70, 33}, 24, 12, 96, 16, 3, DType::bf16},      // 2 items
                      RowCase{{40, 1, 9}, 36, 12, 96, 8, 2, DType::f32},      // 2, GQA
                      RowCase{{19, 30}, 6, 3, 1100, 8, 2, DType::f16}));      // 3 items

// The rows depend only on their own token: one row alone, or the rows in another order,
// give the same values bitwise.
TEST(Rows, OrderAndCompanyDoNotMatter) {
    const Problem p = make_problem({40, 29}, 2, 1, 8, 8, 2, DType::bf16);
    const HostInputs in = make_inputs(p, 31);
    const Selection sel = gating(p, in).selection;
    const std::vector<std::int64_t> tokens{68, 3, 39, 40, 68};
    const Forward all = forward_rows(p, gather(p, in, &sel, tokens));
    for (std::size_t r = 0; r < tokens.size(); ++r) {
        const Forward one = forward_rows(p, gather(p, in, &sel, {tokens[r]}));
        const auto width = static_cast<std::ptrdiff_t>(p.heads_q * p.head_dim);
        EXPECT_TRUE(std::equal(one.out.begin(), one.out.end(),
                               all.out.begin() + static_cast<std::ptrdiff_t>(r) * width))
            << "row " << r;
        for (int h = 0; h < p.heads_q; ++h) {
            EXPECT_EQ(one.lse[h], all.lse[h * tokens.size() + r]) << "row " << r;
        }
    }
    const Forward none = forward_rows(p, gather(p, in, &sel, {}));
    EXPECT_TRUE(none.out.empty());
    EXPECT_TRUE(none.lse.empty());
}

// ---- 2. Malformed inputs are refused -----------------------------------------------------

TEST(Rows, MalformedInputsAreRefused) {
    const Problem p = make_problem({12, 5}, 2, 1, 4, 4, 2, DType::f32);
    const HostInputs in = make_inputs(p, 606);
    const Selection sel = gating(p, in).selection;
    const RowInputs good = gather(p, in, &sel, {5, 9, 16});
    EXPECT_NO_THROW(forward_rows(p, good));
    EXPECT_NO_THROW(baseline_forward_rows(p, good));
    EXPECT_NO_THROW(forward_rows(p, gather(p, in, nullptr, {5, 9, 16})));

    auto refused = [&](RowInputs rows, const char* what) {
        EXPECT_THROW(forward_rows(p, rows), std::invalid_argument) << what;
        EXPECT_THROW(baseline_forward_rows(p, rows), std::invalid_argument) << what;
    };
    RowInputs r = good;
    r.q_rows.pop_back();
    refused(r, "q_rows one short");
    r = good;
    r.tokens.push_back(0);  // a token without its q row
    refused(r, "token without q row");
    for (std::int64_t t : {std::int64_t{-1}, p.total_tokens()}) {
        r = good;
        r.tokens[1] = t;
        refused(r, "token out of range");
    }
    r = good;
    r.k = nullptr;
    refused(r, "no k");
    const std::vector<float> short_v(in.v.begin(), in.v.end() - 1);
    r = good;
    r.v = &short_v;
    refused(r, "v one short");
    // Row 0 is token 5, own block 1 (slots 2): [1, 2] names a future block.
    r = good;
    r.sel_rows.blocks[0] = 1;
    r.sel_rows.blocks[1] = 2;
    refused(r, "future block");
    r = good;
    r.sel_rows.blocks[2] = 0;  // head 1 of token 5: [0, -1]
    r.sel_rows.blocks[3] = -1;
    refused(r, "own block missing");
    r = good;
    r.sel_rows.slots = 1;
    refused(r, "slots");
    r = good;
    r.sel_rows.blocks.pop_back();
    refused(r, "sel_rows one short");
    r = gather(p, in, nullptr, {5, 9, 16});
    r.sel_rows.blocks = {1};  // no slots but blocks
    refused(r, "blocks without slots");
}

// ---- 3. A long sequence: 2^24 elements per tensor, a row of 262144 keys -------------------

TEST(Rows, LongSequenceFullCausal) {
    const Problem p = make_problem({262144}, 1, 1, 64, 4096, 1, DType::bf16);
    // Uniform values on the bf16 grid (make_inputs' normals for 4 x 16.7M elements took 3-7 s).
    HostInputs in;
    std::mt19937_64 rng(262144);
    std::uniform_int_distribution<int> grid(-255, 255);
    for (std::vector<float>* x : {&in.q, &in.k, &in.v}) {
        x->resize(static_cast<std::size_t>(p.kv_elems()));
        for (float& e : *x) e = std::ldexp(static_cast<float>(grid(rng) | 1), -7);
    }
    const std::vector<std::int64_t> tokens{262143, 0, 131072, 262142, 4095, 4096, 200000, 77};
    const RowInputs rows = gather(p, in, nullptr, tokens);
    const Forward f = forward_rows(p, rows);
    const ForwardOutput b = baseline_forward_rows(p, rows);
    for (const std::vector<double>* x : {&f.out, &f.lse}) {
        EXPECT_TRUE(std::all_of(x->begin(), x->end(), [](double e) { return std::isfinite(e); }));
    }
    for (const std::vector<float>* x : {&b.out, &b.lse}) {
        EXPECT_TRUE(std::all_of(x->begin(), x->end(), [](float e) { return std::isfinite(e); }));
    }
    ASSERT_EQ(f.out.size(), tokens.size() * 64);
    // Token 0 attends only itself: out = v_0, lse = scale q_0 . k_0.
    double s00 = 0.0;
    for (int d = 0; d < 64; ++d) s00 += double{in.q[d]} * double{in.k[d]};
    EXPECT_NEAR(f.lse[1], p.scale() * s00, 1e-12);
    for (int d = 0; d < 64; ++d) EXPECT_EQ(f.out[64 + d], double{in.v[d]});
    // The last token, written out plainly: all 262144 keys.
    const std::int64_t t = tokens[0];
    std::vector<double> s(static_cast<std::size_t>(t + 1));
    for (std::int64_t j = 0; j <= t; ++j) {
        double dot = 0.0;
        for (int d = 0; d < 64; ++d) dot += double{in.q[t * 64 + d]} * double{in.k[j * 64 + d]};
        s[j] = p.scale() * dot;
    }
    const double m = *std::max_element(s.begin(), s.end());
    double l = 0.0;
    std::vector<double> o(64);
    for (std::int64_t j = 0; j <= t; ++j) {
        const double e = std::exp(s[j] - m);
        l += e;
        for (int d = 0; d < 64; ++d) o[d] += e * double{in.v[j * 64 + d]};
    }
    EXPECT_NEAR(f.lse[0], m + std::log(l), 1e-12 * std::fabs(m + std::log(l)));
    for (int d = 0; d < 64; ++d) EXPECT_NEAR(f.out[d], o[d] / l, 1e-12 * max_abs(o) / l) << d;
    // The baseline of that row lands near the truth, not on it.
    double err = 0.0;
    for (int d = 0; d < 64; ++d) err = std::max(err, std::fabs(b.out[d] - f.out[d]));
    EXPECT_GT(err, 0.0);
    EXPECT_LT(err, 1e-2 * max_abs(f.out));
}

}  // namespace
}  // namespace moba::ref

// ---- 4. Backward rows equal the full backward's rows ---------------------------------------
namespace moba::ref {
namespace {

std::int64_t bit_mismatches64(const std::vector<double>& a, const std::vector<double>& b) {
    EXPECT_EQ(a.size(), b.size());
    if (a.size() != b.size()) return -1;
    std::int64_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        n += std::bit_cast<std::uint64_t>(a[i]) != std::bit_cast<std::uint64_t>(b[i]);
    }
    return n;
}

// Rows `tokens` of a [total, heads, D] tensor.
template <class T>
std::vector<T> take_rows(const std::vector<T>& full, const std::vector<std::int64_t>& tokens,
                         std::int64_t width) {
    std::vector<T> rows;
    for (std::int64_t t : tokens) {
        rows.insert(rows.end(), full.begin() + t * width, full.begin() + (t + 1) * width);
    }
    return rows;
}

BackwardRowInputs gather_backward(const Problem& p, const HostInputs& in, const Selection* sel,
                                  std::vector<std::int64_t> tokens) {
    BackwardRowInputs b;
    b.rows = gather(p, in, sel, std::move(tokens));
    b.dout_rows = take_rows(in.dout, b.rows.tokens, std::int64_t{p.heads_q} * p.head_dim);
    return b;
}

// Every query token attending one of `keys` with some head (same sequence, at or after it,
// its block selected), ascending: the rows backward_key_rows needs.
std::vector<std::int64_t> attending_tokens(const Problem& p, const Selection* sel,
                                           const std::vector<std::int64_t>& keys) {
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    std::vector<std::int64_t> tokens;
    for (std::int64_t t = 0; t < p.total_tokens(); ++t) {
        const auto s = std::upper_bound(cu.begin(), cu.end(), t) - cu.begin() - 1;
        bool attends = false;
        for (std::int64_t key : keys) {
            if (key < cu[s] || key > t) continue;
            const auto block = static_cast<std::int32_t>((key - cu[s]) / p.block);
            for (int h = 0; h < p.heads_q && !attends; ++h) {
                if (sel == nullptr) {
                    attends = true;
                    break;
                }
                const std::int32_t* row = sel->blocks.data() + (t * p.heads_q + h) * sel->slots;
                attends = std::find(row, row + sel->slots, block) != row + sel->slots;
            }
        }
        if (attends) tokens.push_back(t);
    }
    return tokens;
}

std::vector<std::int64_t> all_tokens(const Problem& p) {
    std::vector<std::int64_t> tokens(static_cast<std::size_t>(p.total_tokens()));
    std::iota(tokens.begin(), tokens.end(), std::int64_t{0});
    return tokens;
}

class BackwardRowsMatch : public RowsMatch {};

TEST_P(BackwardRowsMatch, SelectionRowsEqualAttentionBackwardRows) {
    const Problem p = problem();
    const HostInputs in = make_inputs(p, 2026);
    const Selection sel = gating(p, in).selection;
    const std::int64_t qw = std::int64_t{p.heads_q} * p.head_dim;
    const std::int64_t kw = std::int64_t{p.heads_kv} * p.head_dim;
    const Gradients full = attention_backward(p, in, sel);
    const GradientOutput base = baseline_backward(p, in, sel);

    const std::vector<std::int64_t> tokens = pick_tokens(p, 12, 9);
    const BackwardRowInputs q_rows = gather_backward(p, in, &sel, tokens);
    EXPECT_EQ(bit_mismatches64(backward_query_rows(p, q_rows), take_rows(full.dq, tokens, qw)), 0);
    EXPECT_EQ(bit_mismatches(baseline_backward_query_rows(p, q_rows), take_rows(base.dq, tokens, qw)), 0);

    // Keys: random ones and every sequence's first and last token (no repeats needed).
    std::vector<std::int64_t> keys = pick_tokens(p, 6, 10);
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    std::shuffle(keys.begin(), keys.end(), std::mt19937_64(11));
    for (const std::vector<std::int64_t>& queries : {all_tokens(p), attending_tokens(p, &sel, keys)}) {
        std::vector<std::int64_t> shuffled = queries;  // the rows may come in any order
        std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(12));
        const BackwardRowInputs rows = gather_backward(p, in, &sel, shuffled);
        const KeyGradients got = backward_key_rows(p, rows, keys);
        EXPECT_GT(max_abs(got.dk), 0.0);
        EXPECT_EQ(bit_mismatches64(got.dk, take_rows(full.dk, keys, kw)), 0) << queries.size() << " rows";
        EXPECT_EQ(bit_mismatches64(got.dv, take_rows(full.dv, keys, kw)), 0) << queries.size() << " rows";
        const BaselineKeyGradients b = baseline_backward_key_rows(p, rows, keys);
        EXPECT_EQ(bit_mismatches(b.dk, take_rows(base.dk, keys, kw)), 0) << queries.size() << " rows";
        EXPECT_EQ(bit_mismatches(b.dv, take_rows(base.dv, keys, kw)), 0) << queries.size() << " rows";
    }
}

TEST_P(BackwardRowsMatch, FullCausalRowsEqualFullSelectionRows) {
    const Problem p = problem();
    const HostInputs in = make_inputs(p, 2027);
    Problem dense = p;
    dense.topk = p.max_blocks();
    const Selection all = full_selection(dense);
    const std::int64_t qw = std::int64_t{p.heads_q} * p.head_dim;
    const std::int64_t kw = std::int64_t{p.heads_kv} * p.head_dim;
    const Gradients full = attention_backward(dense, in, all);
    const GradientOutput base = baseline_backward(dense, in, all);
    const std::vector<std::int64_t> tokens = pick_tokens(p, 12, 13);
    const BackwardRowInputs q_rows = gather_backward(p, in, nullptr, tokens);
    EXPECT_EQ(bit_mismatches64(backward_query_rows(p, q_rows), take_rows(full.dq, tokens, qw)), 0);
    EXPECT_EQ(bit_mismatches(baseline_backward_query_rows(p, q_rows), take_rows(base.dq, tokens, qw)), 0);
    const std::vector<std::int32_t> cu = p.cu_seqlens();
    const std::vector<std::int64_t> keys{cu[1] - 1, 0, p.total_tokens() / 2};
    const BackwardRowInputs rows = gather_backward(p, in, nullptr, attending_tokens(p, nullptr, keys));
    const KeyGradients got = backward_key_rows(p, rows, keys);
    EXPECT_EQ(bit_mismatches64(got.dk, take_rows(full.dk, keys, kw)), 0);
    EXPECT_EQ(bit_mismatches64(got.dv, take_rows(full.dv, keys, kw)), 0);
    const BaselineKeyGradients b = baseline_backward_key_rows(p, rows, keys);
    EXPECT_EQ(bit_mismatches(b.dk, take_rows(base.dk, keys, kw)), 0);
    EXPECT_EQ(bit_mismatches(b.dv, take_rows(base.dv, keys, kw)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BackwardRowsMatch,
    ::testing::Values(RowCase{{37, 64, 5}, 4, 2, 16, 8, 3, DType::bf16},      // GQA
                      RowCase{{1, 50, 17, 1}, 3, 1, 8, 4, 1, DType::f16},     // MQA, k = 1
                      RowCase{{33, 9}, 2, 2, 12, 8, 8, DType::f32},           // k >= n
                      RowCase{{1, 23, 1, 40}, 4, 1, 32, 16, 2, DType::bf16},  // partial
                      RowCase{{130, 2, 61}, 2, 1, 20, 16, 3, DType::f32},     // D % 8 != 0
                      RowCase{{70, 33}, 24, 12, 96, 16, 3, DType::bf16}));    // 2 items

TEST(BackwardRows, MalformedInputsAreRefused) {
    const Problem p = make_problem({12, 5}, 2, 1, 4, 4, 2, DType::f32);
    const HostInputs in = make_inputs(p, 607);
    const Selection sel = gating(p, in).selection;
    BackwardRowInputs good = gather_backward(p, in, &sel, {5, 9, 10, 11, 16});
    EXPECT_NO_THROW(backward_query_rows(p, good));
    EXPECT_NO_THROW(backward_key_rows(p, good, {9}));
    BackwardRowInputs r = good;
    r.dout_rows.pop_back();
    EXPECT_THROW(backward_query_rows(p, r), std::invalid_argument);
    EXPECT_THROW(baseline_backward_query_rows(p, r), std::invalid_argument);
    test::expect_error([&] { backward_key_rows(p, good, {8}); }, "not among the query rows");
    test::expect_error([&] { baseline_backward_key_rows(p, good, {p.total_tokens()}); }, "outside");
    r = gather_backward(p, in, &sel, {5, 9, 5});
    test::expect_error([&] { backward_key_rows(p, r, {5}); }, "twice");
}

// ---- 5. Gating of sampled rows equals the full gating's rows -------------------------------

TEST(GatingRows, EqualGatingRowsBitwise) {
    for (const Problem& p : {make_problem({300, 77, 1}, 4, 2, 32, 16, 4, DType::bf16),
                             make_problem({64, 9}, 2, 1, 8, 8, 1, DType::f32),
                             make_problem({129}, 3, 3, 16, 8, 100, DType::f16)}) {
        const HostInputs in = make_inputs(p, 77);
        const GatingResult full = gating(p, in);
        const std::vector<std::int64_t> tokens = pick_tokens(p, 20, 14);
        const RowInputs rows = gather(p, in, nullptr, tokens);
        const GatingResult got = gating_rows(p, rows);
        const Selection want = gather(p, in, &full.selection, tokens).sel_rows;
        EXPECT_EQ(got.selection.slots, want.slots);
        EXPECT_EQ(got.selection.blocks, want.blocks);
        for (std::size_t r = 0; r < tokens.size(); ++r) {
            for (int h = 0; h < p.heads_q; ++h) {
                const std::size_t at = r * p.heads_q + h;
                const std::size_t full_at = tokens[r] * p.heads_q + h;
                EXPECT_EQ(got.boundary_gap[at], full.boundary_gap[full_at]);
                EXPECT_EQ(got.boundary_magnitude[at], full.boundary_magnitude[full_at]);
                EXPECT_EQ(got.boundary_abs_score[at], full.boundary_abs_score[full_at]);
            }
        }
    }
}

}  // namespace
}  // namespace moba::ref
