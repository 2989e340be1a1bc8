// Host-side pieces shared by the wgmma launchers: dense_forward.cu (the causal kernel, dense and
// own-block modes) and moba_forward.cu (the MoBA forward built on it).
#pragma once

#include "kernels/kernel_api.hpp"
#include "kernels/moba/accumulator.hpp"

namespace moba::wgmma::detail {

// Launches the causal kernel on args.stream for a problem dense_can_implement accepts (throws
// moba::CudaError on a failed launch). acc == nullptr: dense mode, writes args.out and args.lse.
// Otherwise the own-block pass: every row of acc's head pass over its own MoBA block up to
// itself, into *acc.
void launch_causal(const AttentionArgs& args, const sparse::Accumulator* acc);

}  // namespace moba::wgmma::detail
