// The same-precision baseline of SEMANTICS.md §5.1 computed on the GPU, for `--reference gpu`
// (lengths at which the CPU baseline would take too long): the naive kernels in the problem's
// dtype with probabilities and dS rounded to the dtype before their products, every output
// rounded (naive.hpp's baseline_forward / baseline_backward). It is the yardstick beside the
// float64 GPU truth (reference/gpu/attention64.hpp), never a truth itself. Rounding only the
// outputs would leave out the error that grows with the number of rows summed into a key's
// dK/dV (64K rows x 8 heads in MQA), which every tensor-core kernel carries, and make the bound
// stricter than SEMANTICS.md §5 asks.
#pragma once

#include "core/tensors.hpp"
#include "harness/gpu_run.hpp"

namespace moba {

AttentionRun naive_baseline(const Problem& problem, const HostInputs& inputs, const Selection& sel);

}  // namespace moba
