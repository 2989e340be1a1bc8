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

}  // namespace moba
