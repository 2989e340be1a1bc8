#include "harness/registry.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/decode/split_decode.hpp"
#include "kernels/dense_cublas/dense_cublas.hpp"
#include "kernels/naive/naive.hpp"
#include "kernels/tiled_mma/backward.hpp"
#include "kernels/moba/gating.hpp"
#include "kernels/tiled_mma/tiled_mma.hpp"
#include "kernels/wgmma/wgmma.hpp"

namespace moba {

HeadDimSet HeadDimSet::exactly(std::vector<int> head_dims) {
    std::sort(head_dims.begin(), head_dims.end());
    return HeadDimSet{.listed = std::move(head_dims)};
}

HeadDimSet HeadDimSet::up_to(int largest_head_dim, int step) {
    return HeadDimSet{.listed = {}, .max = largest_head_dim, .multiple_of = step};
}

int HeadDimSet::largest() const { return listed.empty() ? max : listed.back(); }

bool HeadDimSet::contains(int head_dim) const {
    if (!listed.empty()) return std::find(listed.begin(), listed.end(), head_dim) != listed.end();
    return head_dim >= 1 && head_dim <= max && head_dim % multiple_of == 0;
}

std::string HeadDimSet::describe() const {
    if (!listed.empty()) return fmt::format("{}", fmt::join(listed, ", "));
    if (multiple_of == 1) return fmt::format("≤ {}", max);
    return fmt::format("≤ {}, multiple of {}", max, multiple_of);
}

Support Implementation::supports(const Problem& problem) const {
    if (std::find(dtypes.begin(), dtypes.end(), problem.dtype) == dtypes.end())
        return Support::no(fmt::format("{} does not implement dtype {}", name, to_string(problem.dtype)));
    if (problem.head_dim > head_dims.largest())
        return Support::no(fmt::format("{} implements head dims up to {}, not {}", name,
                                       head_dims.largest(), problem.head_dim));
    return can_implement ? can_implement(problem) : Support::yes();
}

Support Implementation::supports_decode(const Problem& cache, int max_q_len) const {
    if (!has_decode()) return Support::no(name + " has no decode step");
    if (decode_max_q_len > 0 && max_q_len > decode_max_q_len)
        return Support::no(fmt::format("{} takes at most {} new token(s) per request, not {}", name,
                                       decode_max_q_len, max_q_len));
    return supports(cache);
}

std::string decode_only_reason(const Implementation& impl) {
    return fmt::format("{} is decode only (no prefill forward): check it with `moba check --suite decode` or "
                       "--q-lens, time it with `moba decode-study`",
                       impl.name);
}

std::string_view to_string(BlockMeans means) { return means == BlockMeans::exact ? "exact" : "rounded"; }

BlockMeans parse_block_means(std::string_view text) {
    if (text == "exact") return BlockMeans::exact;
    if (text == "rounded") return BlockMeans::rounded;
    throw std::invalid_argument(fmt::format("unknown block-mean convention '{}' (exact or rounded)", text));
}

namespace {

std::vector<Implementation>& table() {
    static std::vector<Implementation> entries = [] {
        std::vector<Implementation> list;
        list.push_back(Implementation{
            .name = "naive",
            .technique = "fp32 CUDA cores, one warp per (query, head); gathered dk/dv, no atomics",
            .dtypes = {DType::bf16, DType::f16, DType::f32},
            .head_dims = HeadDimSet::up_to(naive::kMaxHeadDim),
            .can_implement = naive::can_implement,
            .gating_workspace_bytes = naive::gating_workspace_bytes,
            .attention_workspace_bytes = naive::attention_workspace_bytes,
            .gating = naive::gating,
            .forward = naive::forward,
            .backward = naive::backward,
            .decode_workspace_bytes = naive::decode_workspace_bytes,
            .decode_prepare = {},
            .decode = naive::decode,
        });
        list.push_back(Implementation{
            .name = "naive_dense",
            .technique = "full causal attention through the naive kernels (one block per sequence)",
            .dtypes = {DType::bf16, DType::f16, DType::f32},
            .head_dims = HeadDimSet::up_to(naive::kMaxHeadDim),
            .dense = true,
            .can_implement = naive::can_implement,
            .gating_workspace_bytes = {},
            .attention_workspace_bytes = naive::dense_workspace_bytes,
            .gating = {},
            .forward = naive::dense_forward,
            .backward = naive::dense_backward,
        });
        list.push_back(Implementation{
            .name = "dense_cublas",
            .technique = "full causal attention: cuBLAS batched GEMMs (tensor cores) with a "
                         "softmax kernel between; ignores the selection",
            .dtypes = {DType::bf16, DType::f16},
            // 16-byte aligned GEMM operands (dense_cublas::can_implement).
            .head_dims = HeadDimSet::up_to(dense_cublas::kMaxHeadDim, 8),
            .dense = true,
            .can_implement = dense_cublas::can_implement,
            .gating_workspace_bytes = {},
            .attention_workspace_bytes = dense_cublas::workspace_bytes,
            .gating = {},
            .forward = dense_cublas::forward,
            .backward = dense_cublas::backward,
        });
        list.push_back(Implementation{
            .name = "tiled_mma",
            .technique = "MoBA on mma.sync tensor cores: fused gating; own-block causal pass, then "
                         "one wave per past-block slot over inverse block lists (GQA groups share "
                         "K/V loads), fp32 accumulator merged without atomics; deterministic backward "
                         "(dK/dV per key tile over gathered rows, dQ in waves)",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .can_implement =
                [](const Problem& p) {
                    if (Support s = tiled_mma::can_implement(p); !s.ok) return s;
                    return tiled_mma::backward_can_implement(p);
                },
            .gating_workspace_bytes = sparse::gating_workspace_bytes,
            .attention_workspace_bytes =
                [](const Problem& p) {
                    return std::max(tiled_mma::attention_workspace_bytes(p),
                                    tiled_mma::backward_workspace_bytes(p));
                },
            .gating = sparse::gating,
            .forward = tiled_mma::forward,
            .backward = tiled_mma::backward,
        });
        list.push_back(Implementation{
            .name = "tiled_mma_dense",
            .technique = "full causal attention through the tiled_mma core (FlashAttention-2 "
                         "style mma.sync, online softmax, masked diagonal tiles only)",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .dense = true,
            .can_implement =
                [](const Problem& p) {
                    if (Support s = tiled_mma::dense_can_implement(p); !s.ok) return s;
                    return tiled_mma::dense_backward_can_implement(p);
                },
            .gating_workspace_bytes = {},
            .attention_workspace_bytes = tiled_mma::dense_backward_workspace_bytes,
            .gating = {},
            .forward = tiled_mma::dense_forward,
            .backward = tiled_mma::dense_backward,
        });
        list.push_back(Implementation{
            .name = "wgmma_dense",
            .technique = "full causal attention; forward on Hopper warpgroup MMA (FlashAttention-3 "
                         "style: TMA loads by a producer warpgroup, two consumer warpgroups of 64 "
                         "rows, P from registers); backward on warpgroup MMA too: dQ in the "
                         "forward's shape, dK/dV with 64 keys per consumer warpgroup (P^T and "
                         "dS^T from registers); deterministic, no atomics",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .dense = true,
            .can_implement = wgmma::dense_backward_can_implement,
            .gating_workspace_bytes = {},
            .attention_workspace_bytes = wgmma::dense_backward_workspace_bytes,
            .gating = {},
            .forward = wgmma::dense_forward,
            .backward = wgmma::dense_backward,
        });
        list.push_back(Implementation{
            .name = "wgmma_dense_atomic",
            .technique = "wgmma_dense's forward; backward in FlashAttention-3's 5 products: the "
                         "dK/dV kernel also multiplies dS (through shared memory) by K and adds dQ "
                         "to an fp32 buffer by bulk reduce-adds in no fixed order; dq not bitwise "
                         "repeatable (dk, dv are)",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({128}),
            .dense = true,
            .can_implement = wgmma::dense_atomic_backward_can_implement,
            .gating_workspace_bytes = {},
            .attention_workspace_bytes = wgmma::dense_atomic_backward_workspace_bytes,
            .gating = {},
            .forward = wgmma::dense_forward,
            .backward = wgmma::dense_atomic_backward,
        });
        list.push_back(Implementation{
            .name = "wgmma_moba",
            .technique = "MoBA; forward on Hopper warpgroup MMA: the wgmma_dense kernel in "
                         "own-block mode, then one persistent wave per past-block slot over "
                         "tiled_mma's inverse block lists (Q rows gathered by cp.async, K/V by "
                         "TMA, shared by the GQA group); backward on warpgroup MMA too: dQ over "
                         "the own block, then in waves over the lists, dK/dV per 128-key tile of "
                         "a block over its gathered rows; deterministic; gating is tiled_mma's "
                         "(mma.sync)",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .can_implement =
                [](const Problem& p) {
                    if (Support s = wgmma::moba_can_implement(p); !s.ok) return s;
                    if (Support s = sparse::gating_can_implement(p); !s.ok) return s;
                    return wgmma::moba_backward_can_implement(p);
                },
            .gating_workspace_bytes = sparse::gating_workspace_bytes,
            .attention_workspace_bytes =
                [](const Problem& p) {
                    return std::max(wgmma::moba_workspace_bytes(p),
                                    wgmma::moba_backward_workspace_bytes(p));
                },
            .gating = sparse::gating,
            .forward = wgmma::moba_forward,
            .backward = wgmma::moba_backward,
        });
        list.push_back(Implementation{
            .name = "wgmma_moba_atomic",
            .technique = "wgmma_moba's forward and gating; backward in 5 products: the dK/dV "
                         "kernel over a block's gathered rows also multiplies dS (through shared "
                         "memory) by K and adds each row's dQ to an fp32 accumulator by vector "
                         "reductions in no fixed order (no own-block dQ, no dQ waves); dq not "
                         "bitwise repeatable (dk, dv are)",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({128}),
            .can_implement =
                [](const Problem& p) {
                    if (Support s = wgmma::moba_can_implement(p); !s.ok) return s;
                    if (Support s = sparse::gating_can_implement(p); !s.ok) return s;
                    return wgmma::moba_atomic_backward_can_implement(p);
                },
            .gating_workspace_bytes = sparse::gating_workspace_bytes,
            .attention_workspace_bytes =
                [](const Problem& p) {
                    return std::max(wgmma::moba_workspace_bytes(p),
                                    wgmma::moba_atomic_backward_workspace_bytes(p));
                },
            .gating = sparse::gating,
            .forward = wgmma::moba_forward,
            .backward = wgmma::moba_atomic_backward,
        });
        list.push_back(Implementation{
            .name = "split_decode",
            .technique = "decode only: MoBA decode step over packed or paged KV caches; gating "
                         "from block means kept at prefill, per kv group the union of its heads' "
                         "blocks read once (split-KV over key chunks), partials merged by "
                         "log-sum-exp",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .can_implement = split_decode::can_implement,
            .decode_workspace_bytes = split_decode::workspace_bytes,
            .decode_prepare = split_decode::prepare,
            .decode = split_decode::decode,
        });
        list.push_back(Implementation{
            .name = "split_decode_dense",
            .technique = "decode only: dense decode (FlashDecoding-class split-KV over every "
                         "cached key, merged by log-sum-exp); the decode study's dense baseline",
            .dtypes = {DType::bf16, DType::f16},
            .head_dims = HeadDimSet::exactly({64, 128}),
            .dense = true,
            .can_implement = split_decode::can_implement,
            .decode_workspace_bytes = split_decode::dense_workspace_bytes,
            .decode = split_decode::dense_decode,
        });
        // Room for the external entries up front: the vector never reallocates, so the
        // Implementation pointers the checks and benchmarks hold stay valid while one is added.
        list.reserve(list.size() + kMaxExternalImplementations);
        return list;
    }();
    return entries;
}

}  // namespace

const std::vector<Implementation>& registry() { return table(); }

void register_external(Implementation impl) {
    std::vector<Implementation>& entries = table();
    if (impl.name.empty()) throw std::invalid_argument("an implementation needs a name");
    if (!impl.forward && !impl.decode)
        throw std::invalid_argument(fmt::format("implementation '{}' has neither a forward nor a decode step", impl.name));
    impl.external = true;
    for (Implementation& entry : entries) {
        if (entry.name != impl.name) continue;
        if (!entry.external)
            throw std::invalid_argument(fmt::format("'{}' is a built-in implementation's name; choose another",
                                                    impl.name));
        entry = std::move(impl);
        return;
    }
    if (entries.size() == entries.capacity())
        throw std::invalid_argument(fmt::format("at most {} external implementations may be registered",
                                                kMaxExternalImplementations));
    entries.push_back(std::move(impl));
}

const Implementation* find_implementation(std::string_view name) {
    for (const auto& impl : registry())
        if (impl.name == name) return &impl;
    return nullptr;
}

CommandNaming command_naming(std::string_view impl_name) {
    CommandNaming naming{"moba", "--impl " + std::string(impl_name)};
    if (const Implementation* impl = find_implementation(impl_name)) {
        if (!impl->cli_tool.empty()) naming.tool = impl->cli_tool;
        if (!impl->cli_impl_flags.empty()) naming.impl_flags = impl->cli_impl_flags;
    }
    return naming;
}

std::string implementation_names() {
    std::string names;
    for (const auto& impl : registry()) names += (names.empty() ? "" : ", ") + impl.name;
    return names;
}

}  // namespace moba
