#include "harness/suite.hpp"

#include <stdexcept>
#include <string>
#include <utility>

namespace moba {
namespace {

struct Lengths {
    std::vector<int> seqlens;
    int block;
};

// Appends one case; its seed and input family follow from its index (the cases before it).
// topk <= 0 means "k >= n" (zero sparsity).
void add_case(std::vector<CheckCase>& cases, std::vector<int> seqlens, int heads_q, int heads_kv, int head_dim,
              int block, int topk, DType dtype, std::uint64_t base_seed, const std::vector<InputFamily>& families,
              double softmax_scale = 0.0) {
    Problem p;
    p.softmax_scale = softmax_scale;
    p.seqlens = std::move(seqlens);
    p.heads_q = heads_q;
    p.heads_kv = heads_kv;
    p.head_dim = head_dim;
    p.block = block;
    p.dtype = dtype;
    p.topk = topk > 0 ? topk : p.max_blocks();
    const std::size_t index = cases.size();
    cases.push_back({p, base_seed + index, families[index % families.size()]});
}

std::vector<CheckCase> matrix(const std::vector<Lengths>& lengths, const std::vector<int>& topks,
                              const std::vector<int>& head_dims, int heads_q,
                              const std::vector<int>& kv_heads, std::uint64_t base_seed,
                              const std::vector<InputFamily>& families, std::vector<CheckCase> cases = {}) {
    // Appends to `cases`: indices (seeds, families) go on from where they stand.
    for (int hkv : kv_heads)
        for (DType dtype : {DType::bf16, DType::f16})
            for (int d : head_dims)
                for (const auto& len : lengths)
                    for (int k : topks)  // every family in turn, so each shape class meets several
                        add_case(cases, len.seqlens, heads_q, hkv, d, len.block, k, dtype, base_seed, families);
    return cases;
}

}  // namespace

std::vector<InputFamily> suite_input_families() {
    return {InputFamily::normal, InputFamily::dominant, InputFamily::sink, InputFamily::recency,
            InputFamily::peaked, InputFamily::large_v, InputFamily::ties};
}

std::vector<CheckCase> quick_suite(std::uint64_t base_seed, const std::vector<InputFamily>& families) {
    const std::vector<Lengths> lengths = {
        {{1}, 16}, {{113}, 32}, {{1023}, 128}, {{4097}, 256}, {{1000, 17, 2049, 1}, 128}};
    std::vector<CheckCase> cases = matrix(lengths, {1, 3, 0}, {64, 128}, 4, {4, 2, 1}, base_seed, families);
    // The paper's layouts at short lengths: the matrix's 4 query heads make groups of 1, 2 and 4
    // only, and its longest block has 2 key tiles. A kernel that mishandles a group of 32 (Figure
    // 2's MQA), 32 query heads in groups of 4 (its GQA), 16 heads (FlashMoBA's setting) or a
    // block of 16 key tiles (Figure 2b's 2048) would otherwise pass every quick case.
    add_case(cases, {1100, 300}, 32, 1, 128, 128, 3, DType::bf16, base_seed, families);
    add_case(cases, {1100, 300}, 32, 1, 64, 128, 3, DType::f16, base_seed, families);
    add_case(cases, {700}, 32, 1, 128, 128, 0, DType::f16, base_seed, families);  // zero sparsity: the dense entries
    add_case(cases, {1300, 500}, 32, 8, 128, 256, 3, DType::f16, base_seed, families);
    add_case(cases, {1500}, 16, 16, 128, 128, 8, DType::bf16, base_seed, families);
    add_case(cases, {4200, 40}, 4, 1, 128, 2048, 2, DType::bf16, base_seed, families);
    // Figure 2a's top-k 12 (the gating's 16-entry lists, GatingPlan::Select::top16): the matrix's
    // k 3 takes the 8-entry register lists and its k >= n never fills a list.
    add_case(cases, {3000, 600}, 4, 1, 128, 128, 12, DType::bf16, base_seed, families);
    add_case(cases, {2100, 300}, 4, 2, 64, 128, 12, DType::f16, base_seed, families);
    // Softmax scales other than 1/sqrt(D), which every case above takes: a kernel that computes
    // 1/sqrt(D) itself instead of reading the problem's scale passed them all. And a batch of 10
    // sequences (the matrix's largest has 4), so a sequence lookup is searched past a few entries.
    const std::vector<int> ten = {129, 1, 64, 300, 17, 255, 2, 511, 128, 90};
    add_case(cases, ten, 4, 2, 64, 64, 3, DType::bf16, base_seed, families, 0.2);
    add_case(cases, ten, 4, 2, 128, 64, 3, DType::f16, base_seed, families, 0.05);
    add_case(cases, ten, 4, 1, 128, 64, 0, DType::bf16, base_seed, families, 0.15);  // zero sparsity: the dense entries
    return cases;
}

std::vector<CheckCase> long_suite(std::uint64_t base_seed, const std::vector<InputFamily>& families) {
    const std::vector<Lengths> lengths = {
        {{16384}, 512}, {{65536}, 1024}, {{40000, 1, 8191, 16385}, 512}};
    return matrix(lengths, {3, 8, 0}, {128}, 8, {8, 2, 1}, base_seed, families);
}

std::vector<CheckCase> paths_suite(std::uint64_t base_seed, const std::vector<InputFamily>& families) {
    // 94 blocks (block 32) and 257 blocks (block 16): two and five gating tiles of 64 past blocks.
    const std::vector<Lengths> many = {{{3000, 700}, 32}, {{4097}, 16}};
    std::vector<CheckCase> cases = matrix(many, {8, 20, 70}, {64, 128}, 4, {2}, base_seed, families);
    // Block 192: a block's second 128-key tile is partial (quick's blocks are 16, 32 or multiples
    // of 128, so only a first tile is ever cut short).
    const std::vector<Lengths> odd_block = {{{1500, 600}, 192}};
    cases = matrix(odd_block, {3}, {64, 128}, 4, {2}, base_seed, families, std::move(cases));
    // k 12 (16-entry lists) over several gating tiles; last, so the cases above keep their seeds.
    return matrix(many, {12}, {64, 128}, 4, {2}, base_seed, families, std::move(cases));
}

std::vector<CheckCase> named_suite(std::string_view name, std::uint64_t base_seed,
                                   const std::vector<InputFamily>& families) {
    if (families.empty()) throw std::invalid_argument("a suite needs at least one input family");
    if (name == "quick") return quick_suite(base_seed, families);
    if (name == "long") return long_suite(base_seed, families);
    if (name == "paths") return paths_suite(base_seed, families);
    throw std::invalid_argument("unknown suite '" + std::string(name) + "' (expected quick, long, paths or decode)");
}

}  // namespace moba
