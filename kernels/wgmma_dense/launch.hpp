// Host-side pieces shared by the wgmma_dense launchers: forward.cu (the causal kernel, dense and
// own-block modes) and moba_forward.cu (the MoBA forward built on it).
#pragma once

#include <vector_types.h>  // float2

#include "kernels/kernel_api.hpp"

namespace moba::wgmma_dense::detail {

// The MoBA forward's fp32 accumulator, in tiled_mma's layout: O [total, Hq, D] unnormalised,
// (m, l) [total, Hq] with m in the log2 domain (scale * log2 e * s) and l the full row sum.
struct Accumulator {
    float* o;
    float2* ml;
};

// Launches the causal kernel on args.stream for a problem dense_can_implement accepts (throws
// moba::CudaError on a failed launch). acc == nullptr: dense mode, writes args.out and args.lse.
// Otherwise the own-block pass: every row over its own MoBA block up to itself, into *acc.
void launch_causal(const AttentionArgs& args, const Accumulator* acc);

}  // namespace moba::wgmma_dense::detail
