// The float64 GPU truth (SEMANTICS.md §3.1): attention given a selection, and full causal
// attention, computed in float64 on the GPU with cuBLAS DGEMM and a few plain double kernels of
// its own. For lengths the CPU reference cannot reach (`moba check --reference gpu`). Shares no
// code with kernels/ (it includes core/ only) nor with the CPU reference beyond the result
// types; suites/test_reference_gpu.cpp checks it against the CPU reference.
//
// Method: per (sequence, query head), tiles of query rows (plan.hpp); per tile, the union of
// the key blocks its rows attend is gathered (k, v as double: the inputs are exactly
// representable), S = scale Q K_u^T (DGEMM), a kernel masks (block not selected by the row, or
// key after the query), takes the row max m, l = sum exp(S - m), lse = m + ln l, P = exp(S - m) /
// l; out = P V_u (DGEMM). Backward in the same pass: Delta = dout . out (float64 out), dP = dout
// V_u^T, dS = P (dP - Delta), dq = scale dS K_u, dK_u = scale dS^T Q, dV_u = P^T dout, dK_u / dV_u
// added into dk / dv of the kv head (tiles in a fixed order: deterministic).
//
// Throws std::invalid_argument for bad sizes or a malformed selection (before any GPU work),
// moba::CudaError / std::runtime_error for a CUDA or cuBLAS failure (e.g. no device, or not
// enough device memory: it needs the inputs and outputs in double plus about 1 GiB of scores).
#pragma once

#include <cstdint>

#include "core/problem.hpp"
#include "core/tensors.hpp"
#include "reference/gpu/plan.hpp"
#include "reference/results.hpp"

namespace moba::ref::gpu {

struct Result {
    Forward forward;      // out [total, Hq, D], lse [Hq, total]
    Gradients gradients;  // dq [total, Hq, D], dk, dv [total, Hkv, D]; empty from *_forward
};

// Attention given a selection [total, Hq, slots] (SEMANTICS.md §1, §3).
Forward attention_forward(const Problem& problem, const HostInputs& inputs, const Selection& sel);
Gradients attention_backward(const Problem& problem, const HostInputs& inputs,
                             const Selection& sel);
// Forward and backward in one pass. workspace_elems caps a tile's rows x keys (plan.hpp); tests
// lower it to exercise the split tiles.
Result attention(const Problem& problem, const HostInputs& inputs, const Selection& sel,
                 std::int64_t workspace_elems = kWorkspaceElems);

// Full causal attention (every key j <= i of the sequence): MoBA at zero sparsity.
Forward full_attention_forward(const Problem& problem, const HostInputs& inputs);
Gradients full_attention_backward(const Problem& problem, const HostInputs& inputs);
Result full_attention(const Problem& problem, const HostInputs& inputs,
                      std::int64_t workspace_elems = kWorkspaceElems);

}  // namespace moba::ref::gpu
