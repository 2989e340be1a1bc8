// The contract between the harness and every GPU implementation. Arguments are plain
// structs of device pointers passed by value; the launcher picks the grid and the template
// instance, the device code only computes. Layouts are those of core/tensors.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "core/problem.hpp"

namespace moba {

// Outcome of can_implement: an unsupported shape is refused with a reason, never run.
struct Support {
    bool ok = true;
    std::string reason;
    static Support yes() { return {}; }
    static Support no(std::string why) { return {false, std::move(why)}; }
};

struct GatingArgs {
    Problem problem;                 // shapes (host copy)
    const std::int32_t* cu_seqlens;  // [B+1] device
    const void* q;                   // [total, Hq, D] in problem.dtype
    const void* k;                   // [total, Hkv, D]
    std::int32_t* sel;               // out: [total, Hq, problem.sel_slots()], ascending, -1 pad
    void* workspace;                 // gating_workspace_bytes(problem) bytes, may be null if 0
    cudaStream_t stream;
};

struct AttentionArgs {
    Problem problem;                 // shapes (host copy)
    const std::int32_t* cu_seqlens;  // [B+1] device
    const void* q;                   // [total, Hq, D] in problem.dtype
    const void* k;                   // [total, Hkv, D]
    const void* v;                   // [total, Hkv, D]
    const std::int32_t* sel;         // [total, Hq, problem.sel_slots()] as gating writes it
    void* out;                       // [total, Hq, D]   forward output / backward input
    float* lse;                      // [Hq, total]      forward output / backward input
    const void* dout;                // [total, Hq, D]   backward input
    void* dq;                        // [total, Hq, D]   backward outputs
    void* dk;                        // [total, Hkv, D]
    void* dv;                        // [total, Hkv, D]
    void* workspace;                 // workspace_bytes(problem) bytes, may be null if 0
    cudaStream_t stream;
};

// One decode step (SEMANTICS.md §9): the new tokens of a batch of requests against their KV
// caches. A cache is written before attention, so it holds the new tokens too: request r has
// k_len = cache.seqlens[r] tokens, the last q_len[r] of them new; new token t sits at position
// k_len - q_len + t and attends, gates and breaks ties as that position does in prefill.
struct DecodeArgs {
    Problem cache;                    // host copy: seqlens are the cache lengths k_len
    std::int64_t total_q = 0;         // new tokens of the batch
    int max_q_len = 0;                // the most new tokens of one request
    const std::int32_t* cu_q;         // [B+1] device: prefix sums of q_len
    const void* q;                    // [total_q, Hq, D] the new tokens, request by request
    // Where token j of request r lives. Packed (block_table null): row cu_k[r] + j of
    // k, v [total_k, Hkv, D]. Paged (as vLLM and FlashInfer keep caches): row
    // block_table[r * table_width + j / page_size] * page_size + j % page_size of the pools
    // k, v [pages * page_size, Hkv, D]; a page need not align with a MoBA block.
    const std::int32_t* cu_k;         // [B+1] device: prefix sums of k_len
    const void* k;
    const void* v;
    const std::int32_t* block_table;  // [B, table_width] page ids, or null (packed)
    int page_size = 0;
    int table_width = 0;
    // true: the step gates (writes sel) and attends what it selected. false: it attends the
    // given sel, as prefill's forward check feeds the float64 selection to every kernel.
    bool gate = true;
    std::int32_t* sel;                // [total_q, Hq, cache.sel_slots()], ascending, -1 pad
    void* out;                        // [total_q, Hq, D]
    float* lse;                       // [Hq, total_q]
    // decode_workspace_bytes(cache, total_q) bytes. decode_prepare fills what a server keeps
    // from prefill (block means); the step may use the rest as scratch.
    void* workspace;
    cudaStream_t stream;
};

}  // namespace moba
