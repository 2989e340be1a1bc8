// CPU checks of wgmma_dense_atomic's host side (kernels/wgmma/dense_backward.cu): head dim 64
// refused with the reason, the workspace holds the row statistics and either fp32 dQ layout
// (rows, or DqSum::bulk's 64-row tiles of every sequence), and a bad MOBA_DENSE_ATOMIC_DQ is
// refused, naming the value, when the workspace is sized: before anything is allocated or
// launched. The same refusal for wgmma_moba_atomic's MOBA_MOBA_ATOMIC_DQ (moba_backward.cu). No
// GPU needed.
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "kernels/moba/row_stats.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba {
namespace {

Problem varlen_problem(int head_dim) {
    Problem p;
    p.seqlens = {3000, 700, 1, 65};
    p.heads_q = 8;
    p.heads_kv = 2;
    p.head_dim = head_dim;
    p.block = 64;
    p.topk = p.max_blocks();  // zero sparsity, as a dense entry runs
    return p;
}

// Clears both entries' variables for one test and restores what was there.
class AtomicDqEnv : public ::testing::Test {
  protected:
    void SetUp() override {
        for (int i = 0; i < 2; ++i) {
            const char* v = std::getenv(kNames[i]);
            had_[i] = v != nullptr;
            if (had_[i]) saved_[i] = v;
            ::unsetenv(kNames[i]);
        }
    }
    void TearDown() override {
        for (int i = 0; i < 2; ++i) {
            if (had_[i]) ::setenv(kNames[i], saved_[i].c_str(), 1);
            else ::unsetenv(kNames[i]);
        }
    }

  private:
    static constexpr const char* kNames[2] = {wgmma::kAtomicDqEnv, wgmma::kMobaAtomicDqEnv};
    bool had_[2] = {false, false};
    std::string saved_[2];
};

TEST_F(AtomicDqEnv, HeadDim64IsRefusedWithTheReason) {
    const Support s = wgmma::dense_atomic_backward_can_implement(varlen_problem(64));
    EXPECT_FALSE(s.ok);
    EXPECT_NE(s.reason.find("head dim 64"), std::string::npos) << s.reason;
    EXPECT_EQ(wgmma::dense_atomic_backward_workspace_bytes(varlen_problem(64)), 0u);
    EXPECT_TRUE(wgmma::dense_atomic_backward_can_implement(varlen_problem(128)).ok);
}

TEST_F(AtomicDqEnv, WorkspaceHoldsStatisticsAndEitherDqLayout) {
    const Problem p = varlen_problem(128);
    const std::size_t bytes = wgmma::dense_atomic_backward_workspace_bytes(p);
    const std::size_t rows_layout = static_cast<std::size_t>(p.q_elems()) * sizeof(float);
    // DqSum::bulk: sequence b's tiles start at floor(start / 64) + b, so the last one ends below
    // total / 64 + batch + 1 tiles of 64 rows x Hq x D.
    const std::size_t tiles = static_cast<std::size_t>(p.total_tokens() / 64 + p.batch() + 1);
    const std::size_t tile_layout = tiles * 64 * p.heads_q * p.head_dim * sizeof(float);
    EXPECT_GE(bytes, sparse::row_stats_bytes(p) + rows_layout);
    EXPECT_GE(bytes, sparse::row_stats_bytes(p) + tile_layout);
    // And it is more than the deterministic entry's by exactly a dQ buffer's worth or less
    // (alignment aside): the fused dQ is the only addition.
    EXPECT_LE(bytes, wgmma::dense_backward_workspace_bytes(p) + std::max(rows_layout, tile_layout) + 256);
}

// Sizing the workspace (workspace_bytes(p)) accepts red, bulk and the unset value of `name` and
// refuses `bad` with std::invalid_argument naming "name=bad" and the accepted values.
template <typename Sizing>
void expect_only_red_or_bulk(const char* name, Sizing workspace_bytes, const Problem& p, const char* bad) {
    for (const char* ok : {"red", "bulk", ""}) {
        ::setenv(name, ok, 1);
        EXPECT_GT(workspace_bytes(p), 0u) << name << "=" << ok;
    }
    ::setenv(name, bad, 1);
    const std::string setting = std::string(name) + "=" + bad;
    try {
        workspace_bytes(p);
        FAIL() << setting << " was accepted";
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(setting), std::string::npos) << what;
        EXPECT_NE(what.find("red or bulk"), std::string::npos) << what;
    }
}

TEST_F(AtomicDqEnv, ABadSettingIsRefusedByNameBeforeAnyWork) {
    expect_only_red_or_bulk(wgmma::kAtomicDqEnv, wgmma::dense_atomic_backward_workspace_bytes, varlen_problem(128),
                            "atomics");
}

TEST_F(AtomicDqEnv, MobaAtomicBadSettingIsRefusedByNameBeforeAnyWork) {
    Problem p = varlen_problem(128);
    p.topk = 1;  // own blocks only: no block lists, whose sizing asks cub, hence a GPU
    expect_only_red_or_bulk(wgmma::kMobaAtomicDqEnv, wgmma::moba_atomic_backward_workspace_bytes, p, "red_late");
}

}  // namespace
}  // namespace moba
