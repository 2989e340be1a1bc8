// --reference naive: the truth for lengths the CPU reference cannot reach in reasonable time.
// The naive GPU implementation (itself checked against the float64 CPU reference on the
// quick matrix) runs in fp32 on the same dtype-representable inputs: its error is that of
// fp32 accumulation, far below any bf16/fp16 kernel's. The baseline beside it is the naive
// implementation in the problem's dtype.
#pragma once

#include "harness/gpu_run.hpp"
#include "harness/tensors.hpp"

namespace moba {

struct NaiveTruth {
    AttentionRun truth;     // fp32 math, fp32 outputs
    AttentionRun baseline;  // the problem's dtype
};

NaiveTruth naive_truth(const Problem& problem, const HostInputs& inputs, const Selection& sel);
// The naive GPU gating on the problem (fp32 math on the dtype's values).
Selection naive_selection(const Problem& problem, const HostInputs& inputs);

}  // namespace moba
