#include "harness/naive_truth.hpp"

#include <stdexcept>

#include "harness/registry.hpp"
#include "kernels/naive/naive.hpp"

namespace moba {
namespace {

const Implementation& naive_impl() {
    const Implementation* impl = find_implementation("naive");
    if (!impl) throw std::logic_error("the registry has no 'naive' implementation");
    return *impl;
}

}  // namespace

NaiveTruth naive_truth(const Problem& problem, const HostInputs& inputs, const Selection& sel) {
    const Implementation& naive = naive_impl();
    Problem fp32 = problem;
    fp32.dtype = DType::f32;  // the inputs are exactly representable in fp32 too
    NaiveTruth t;
    {
        DeviceInputs din(naive, fp32, inputs);
        t.truth = run_attention(naive, din, sel, true);
    }
    Implementation baseline = naive;
    baseline.name = "naive_baseline";
    baseline.forward = naive::baseline_forward;
    baseline.backward = naive::baseline_backward;
    DeviceInputs din(baseline, problem, inputs);
    t.baseline = run_attention(baseline, din, sel, true);
    return t;
}

Selection naive_selection(const Problem& problem, const HostInputs& inputs) {
    const Implementation& naive = naive_impl();
    DeviceInputs din(naive, problem, inputs);
    return run_gating(naive, din);
}

}  // namespace moba
