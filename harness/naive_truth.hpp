// --reference naive: the truth for lengths the CPU reference cannot reach in reasonable time.
// The naive GPU implementation (itself checked against the float64 CPU reference on the
// quick matrix) runs in fp32 on the same dtype-representable inputs: its error is that of
// fp32 accumulation, far below any bf16/fp16 kernel's. The baseline beside it is SEMANTICS.md §5's
// same-precision baseline computed by the naive kernels in the problem's dtype: probabilities
// and dS rounded to the dtype before their products, every output rounded (naive.hpp's
// baseline_forward / baseline_backward). Rounding only the outputs would leave out the error
// that grows with the number of rows summed into a key's dK/dV (64K rows x 8 heads in MQA),
// which every tensor-core kernel carries, and make the bound stricter than SEMANTICS.md §5 asks.
#pragma once

#include "harness/gpu_run.hpp"
#include "core/tensors.hpp"

namespace moba {

struct NaiveTruth {
    AttentionRun truth;     // fp32 math, fp32 outputs
    AttentionRun baseline;  // the problem's dtype
};

NaiveTruth naive_truth(const Problem& problem, const HostInputs& inputs, const Selection& sel);
// The naive GPU gating on the problem (fp32 math on the dtype's values).
Selection naive_selection(const Problem& problem, const HostInputs& inputs);

}  // namespace moba
