// Uses the installed headers and libraries the way a user's program would: the registry every
// front end shares, and the float64 reference on a problem whose answer is known exactly.
// Exit 0 only when both behave; runs without a GPU.
#include <cmath>
#include <cstdio>
#include <string>

#include "harness/registry.hpp"
#include "harness/version.hpp"
#include "reference/reference.hpp"

int main() {
    using namespace moba;
    int failures = 0;
    const auto expect = [&](bool ok, const std::string& what) {
        if (!ok) {
            std::printf("FAIL: %s\n", what.c_str());
            ++failures;
        }
    };

    std::printf("moba %s (%s): %zu implementations:", project_version(), git_sha(), registry().size());
    for (const auto& impl : registry()) std::printf(" %s", impl.name.c_str());
    std::printf("\n");
    expect(find_implementation("wgmma_moba") != nullptr, "the registry has no wgmma_moba");
    expect(find_implementation("naive") != nullptr, "the registry has no naive");

    // Two sequences, the first of one token: its row attends only itself, so out = v exactly
    // and lse = scale * q.k (SEMANTICS.md §3).
    Problem p;
    p.seqlens = {1, 7};
    p.heads_q = 2;
    p.heads_kv = 1;
    p.head_dim = 8;
    p.block = 2;
    p.topk = 2;
    p.validate();
    HostInputs in;
    in.q.resize(static_cast<std::size_t>(p.q_elems()));
    in.k.resize(static_cast<std::size_t>(p.kv_elems()));
    in.v.resize(static_cast<std::size_t>(p.kv_elems()));
    for (std::size_t i = 0; i < in.q.size(); ++i) in.q[i] = static_cast<float>((i * 7 % 11)) / 8.0f - 0.5f;
    for (std::size_t i = 0; i < in.k.size(); ++i) in.k[i] = static_cast<float>((i * 5 % 13)) / 8.0f - 0.75f;
    for (std::size_t i = 0; i < in.v.size(); ++i) in.v[i] = static_cast<float>(i % 9) - 4.0f;
    const ref::GatingResult gating = ref::gating(p, in);
    const ref::Forward fwd = ref::attention_forward(p, in, gating.selection);
    const int d = p.head_dim;
    for (int h = 0; h < p.heads_q; ++h) {
        double dot = 0;
        for (int i = 0; i < d; ++i) {
            expect(fwd.out[static_cast<std::size_t>(h * d + i)] == in.v[static_cast<std::size_t>(i)],
                   "out of the one-token sequence is not its v (head " + std::to_string(h) + ")");
            dot += double(in.q[static_cast<std::size_t>(h * d + i)]) * in.k[static_cast<std::size_t>(i)];
        }
        const double lse = fwd.lse[static_cast<std::size_t>(h * p.total_tokens())];
        expect(std::abs(lse - p.scale() * dot) <= 1e-12 * (1 + std::abs(lse)),
               "lse of the one-token sequence is not scale * q.k (head " + std::to_string(h) + ")");
    }
    if (failures) {
        std::printf("consumer: %d failures\n", failures);
        return 1;
    }
    std::printf("consumer: the registry and the float64 reference behave\n");
    return 0;
}
