// The float64 decode truth (reference/decode.hpp, SEMANTICS.md §9): new tokens appended to
// cached sequences are prefill's rows at their positions, bitwise (gating, out, lse); a cache of
// one token gives out = v exactly; bad batches are refused naming the request.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/decode.hpp"
#include "reference/reference.hpp"
#include "suites/test_util.hpp"

namespace moba {
namespace {

ref::DecodeBatch batch_of(std::vector<int> k_lens, std::vector<int> q_lens) {
    ref::DecodeBatch b;
    b.cache.seqlens = std::move(k_lens);
    b.cache.heads_q = 4;
    b.cache.heads_kv = 2;
    b.cache.head_dim = 32;
    b.cache.block = 64;
    b.cache.topk = 3;
    b.cache.dtype = DType::f32;  // random fp32 values need no rounding
    b.q_lens = std::move(q_lens);
    return b;
}

// Requests: one token, one new token after a partial block, a chunk of 7 crossing a block
// boundary, and a whole prefill (q_len = k_len).
TEST(ReferenceDecode, NewTokensAreThePrefillRowsAtTheirPositionsBitwise) {
    const ref::DecodeBatch b = batch_of({1, 300, 1025, 130}, {1, 1, 7, 130});
    const Problem& p = b.cache;
    HostInputs in;
    in.q = test::normal_values(static_cast<std::size_t>(p.q_elems()), 1);
    in.k = test::normal_values(static_cast<std::size_t>(p.kv_elems()), 2);
    in.v = test::normal_values(static_cast<std::size_t>(p.kv_elems()), 3);
    const ref::GatingResult gate = ref::gating(p, in);
    const ref::Forward prefill = ref::attention_forward(p, in, gate.selection);

    const std::vector<std::int64_t> positions = b.query_positions();
    ASSERT_EQ(static_cast<std::int64_t>(positions.size()), b.total_q());
    const std::size_t row = static_cast<std::size_t>(p.heads_q) * p.head_dim;
    std::vector<float> q_new;
    for (std::int64_t t : positions)
        q_new.insert(q_new.end(), in.q.begin() + t * row, in.q.begin() + (t + 1) * row);
    const ref::DecodeResult d = ref::decode_forward(b, q_new, in.k, in.v);

    const int slots = p.sel_slots();
    ASSERT_EQ(d.gating.selection.slots, slots);
    for (std::size_t r = 0; r < positions.size(); ++r) {
        const std::int64_t t = positions[r];
        for (int h = 0; h < p.heads_q; ++h) {
            for (int s = 0; s < slots; ++s)
                ASSERT_EQ(d.gating.selection.blocks[(r * p.heads_q + h) * slots + s],
                          gate.selection.blocks[(t * p.heads_q + h) * slots + s])
                    << "token " << t << " head " << h << " slot " << s;
            ASSERT_EQ(d.forward.lse[h * positions.size() + r], prefill.lse[h * p.total_tokens() + t])
                << "token " << t << " head " << h;
            for (int i = 0; i < p.head_dim; ++i)
                ASSERT_EQ(d.forward.out[(r * p.heads_q + h) * p.head_dim + i],
                          prefill.out[(t * p.heads_q + h) * p.head_dim + i])
                    << "token " << t << " head " << h << " dim " << i;
        }
    }
}

TEST(ReferenceDecode, ACacheOfOneTokenGivesItsValue) {
    const ref::DecodeBatch b = batch_of({1}, {1});
    const Problem& p = b.cache;
    const auto q = test::normal_values(static_cast<std::size_t>(p.heads_q * p.head_dim), 4);
    const auto k = test::normal_values(static_cast<std::size_t>(p.kv_elems()), 5);
    const auto v = test::normal_values(static_cast<std::size_t>(p.kv_elems()), 6);
    const ref::DecodeResult d = ref::decode_forward(b, q, k, v);
    for (int h = 0; h < p.heads_q; ++h) {
        const int g = h / p.group();
        double dot = 0;
        for (int i = 0; i < p.head_dim; ++i) {
            EXPECT_EQ(d.forward.out[h * p.head_dim + i], v[g * p.head_dim + i]) << "head " << h;
            dot += double(q[h * p.head_dim + i]) * k[g * p.head_dim + i];
        }
        EXPECT_NEAR(d.forward.lse[h], p.scale() * dot, 1e-12 * (1 + std::abs(dot))) << "head " << h;
    }
}

TEST(ReferenceDecode, BadBatchesAreRefusedNamingTheRequest) {
    const std::vector<float> none;
    auto refused = [&](const ref::DecodeBatch& b, const std::string& want) {
        try {
            ref::decode_forward(b, none, none, none);
            ADD_FAILURE() << "accepted; wanted: " << want;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
        }
    };
    refused(batch_of({10, 20}, {1, 21}), "request 1 has q_len 21 (1 <= q_len <= k_len = 20)");
    refused(batch_of({10, 20}, {0, 1}), "request 0 has q_len 0");
    refused(batch_of({10, 20}, {1}), "2 cache lengths but 1 query lengths");
    refused(batch_of({}, {}), "at least one request");
    refused(batch_of({10}, {2}), "q_new has 0 elements; the batch needs 256");
}

}  // namespace
}  // namespace moba
