#include "harness/naive_baseline.hpp"

#include <stdexcept>

#include "harness/registry.hpp"
#include "kernels/naive/naive.hpp"

namespace moba {

AttentionRun naive_baseline(const Problem& problem, const HostInputs& inputs,
                            const Selection& sel) {
    const Implementation* naive = find_implementation("naive");
    if (!naive) throw std::logic_error("the registry has no 'naive' implementation");
    Implementation baseline = *naive;
    baseline.name = "naive_baseline";
    baseline.forward = naive::baseline_forward;
    baseline.backward = naive::baseline_backward;
    DeviceInputs din(baseline, problem, inputs);
    AttentionRun run = run_attention(baseline, din, sel, true);
    // The yardstick itself must keep to its outputs, or every judgement against it is void.
    if (!run.stray_writes.empty())
        throw std::logic_error("the naive GPU baseline wrote outside its outputs: " + run.stray_writes.front());
    return run;
}

}  // namespace moba
