// Numeric constants that the reference, the kernels and the harness must agree on bit for bit.
// One definition each, so a kernel's log2-domain softmax and the host's scale never drift.
#pragma once

namespace moba {

// log2(e): kernels run the softmax in the log2 domain (exp2 of scale * log2(e) * s).
inline constexpr double kLog2e = 1.4426950408889634;
// ln(2) = 1 / log2(e): turns a log2-domain log-sum-exp back into the natural-log lse.
inline constexpr double kLn2 = 0.69314718055994531;

}  // namespace moba
