// The shape of one MoBA problem: a packed variable-length batch, its head layout, dtype,
// block size and top-k. Every part of the project (reference, kernels, harness) reads
// shapes from here; nothing here computes attention.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moba {

enum class DType { f32, f16, bf16 };

std::string_view to_string(DType dtype);
// Accepts "fp32"/"f32"/"float32", "fp16"/"f16"/"float16"/"half", "bf16"/"bfloat16".
// Throws std::invalid_argument naming the bad text.
DType parse_dtype(std::string_view text);
std::size_t dtype_bytes(DType dtype);

// Head layout names as the docs use them: MHA (Hkv = Hq), GQA (1 < Hkv < Hq), MQA (Hkv = 1).
std::string_view head_layout(int heads_q, int heads_kv);

struct Problem {
    std::vector<int> seqlens;  // lengths of the sequences of the packed batch
    int heads_q = 0;
    int heads_kv = 0;
    int head_dim = 0;
    int block = 0;  // MoBA block size Bs
    int topk = 0;   // blocks per query, own block included
    DType dtype = DType::bf16;
    double softmax_scale = 0.0;  // 0 means 1/sqrt(head_dim)

    // Throws std::invalid_argument with a message naming the offending value.
    void validate() const;

    int batch() const { return static_cast<int>(seqlens.size()); }
    std::int64_t total_tokens() const;
    std::vector<std::int32_t> cu_seqlens() const;  // [B+1] prefix sums
    int max_seqlen() const;
    int group() const { return heads_q / heads_kv; }  // query heads per kv head
    double scale() const;
    int max_blocks() const;  // ceil(max L / block)
    // Width of the selection tensor: min(topk, max_blocks()). At least 1 for a valid problem.
    int sel_slots() const;
    // True when every sequence has topk >= its block count (MoBA equals full causal attention).
    bool zero_sparsity() const;

    // Element counts of the tensors (layouts in tensors.hpp).
    std::int64_t q_elems() const { return total_tokens() * heads_q * head_dim; }
    std::int64_t kv_elems() const { return total_tokens() * heads_kv * head_dim; }
    std::int64_t lse_elems() const { return total_tokens() * heads_q; }
    std::int64_t sel_elems() const { return total_tokens() * heads_q * sel_slots(); }

    // Attended (query, key) pairs summed over query heads, for dense causal attention.
    double dense_pairs() const;

    // "--seqlens 4096,1000 --heads 4 ..." : flags that reproduce this problem.
    std::string flags() const;
};

}  // namespace moba
