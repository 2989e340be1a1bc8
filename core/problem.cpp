#include "core/problem.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace moba {

std::string_view to_string(DType dtype) {
    switch (dtype) {
        case DType::f32: return "fp32";
        case DType::f16: return "fp16";
        case DType::bf16: return "bf16";
    }
    return "unknown";
}

DType parse_dtype(std::string_view text) {
    if (text == "fp32" || text == "f32" || text == "float32") return DType::f32;
    if (text == "fp16" || text == "f16" || text == "float16" || text == "half") return DType::f16;
    if (text == "bf16" || text == "bfloat16") return DType::bf16;
    throw std::invalid_argument(fmt::format("unknown dtype '{}' (expected bf16, fp16 or fp32)", text));
}

std::size_t dtype_bytes(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

std::string_view head_layout(int heads_q, int heads_kv) {
    if (heads_kv == heads_q) return "MHA";
    if (heads_kv == 1) return "MQA";
    return "GQA";
}

void Problem::validate() const {
    if (seqlens.empty()) throw std::invalid_argument("the batch is empty: give at least one sequence length");
    for (std::size_t i = 0; i < seqlens.size(); ++i) {
        if (seqlens[i] <= 0)
            throw std::invalid_argument(fmt::format("sequence length {} (sequence {}) must be positive", seqlens[i], i));
    }
    if (heads_q <= 0) throw std::invalid_argument(fmt::format("query heads {} must be positive", heads_q));
    if (heads_kv <= 0) throw std::invalid_argument(fmt::format("kv heads {} must be positive", heads_kv));
    if (heads_q % heads_kv != 0)
        throw std::invalid_argument(
            fmt::format("query heads {} are not divisible by kv heads {}", heads_q, heads_kv));
    if (head_dim <= 0) throw std::invalid_argument(fmt::format("head dim {} must be positive", head_dim));
    if (block <= 0) throw std::invalid_argument(fmt::format("block size {} must be positive", block));
    if (topk <= 0) throw std::invalid_argument(fmt::format("top-k {} must be positive", topk));
    if (!(softmax_scale >= 0.0) || !std::isfinite(softmax_scale))
        throw std::invalid_argument(fmt::format("softmax scale {} must be finite and >= 0 (0 = 1/sqrt(D))", softmax_scale));
    const std::int64_t total = total_tokens();
    if (total > std::numeric_limits<std::int32_t>::max())
        throw std::invalid_argument(fmt::format("total tokens {} exceed the int32 range of cu_seqlens", total));
}

std::int64_t Problem::total_tokens() const {
    return std::accumulate(seqlens.begin(), seqlens.end(), std::int64_t{0});
}

std::vector<std::int32_t> Problem::cu_seqlens() const {
    std::vector<std::int32_t> cu(seqlens.size() + 1, 0);
    for (std::size_t i = 0; i < seqlens.size(); ++i) cu[i + 1] = cu[i] + seqlens[i];
    return cu;
}

int Problem::max_seqlen() const {
    return seqlens.empty() ? 0 : *std::max_element(seqlens.begin(), seqlens.end());
}

double Problem::scale() const {
    return softmax_scale > 0.0 ? softmax_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

int Problem::max_blocks() const { return (max_seqlen() + block - 1) / block; }

int Problem::sel_slots() const { return std::max(1, std::min(topk, max_blocks())); }

bool Problem::zero_sparsity() const { return topk >= max_blocks(); }

double Problem::dense_pairs() const {
    double pairs = 0.0;
    for (int len : seqlens) pairs += 0.5 * static_cast<double>(len) * (static_cast<double>(len) + 1.0);
    return pairs * heads_q;
}

std::string Problem::flags() const {
    std::string s = fmt::format("--seqlens {} --heads {} --kv-heads {} --head-dim {} --block {} --topk {} --dtype {}",
                                fmt::join(seqlens, ","), heads_q, heads_kv, head_dim, block, topk, to_string(dtype));
    if (softmax_scale > 0.0) s += fmt::format(" --scale {}", softmax_scale);
    return s;
}

}  // namespace moba
