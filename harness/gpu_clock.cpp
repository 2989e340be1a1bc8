// NVML clock and throttle queries (dlopen-ed; see gpu_clock.hpp) and the clock window of a timed stretch.
#include "harness/gpu_clock.hpp"

#include <dlfcn.h>

namespace moba {
namespace {

// The few NVML entry points used, declared here with NVML's stable C signatures (the
// toolkit on the build machines ships no nvml.h).
using NvmlInit = int (*)();
using NvmlHandleByIndex = int (*)(unsigned, void**);
using NvmlClockInfo = int (*)(void*, int, unsigned*);
using NvmlThrottle = int (*)(void*, unsigned long long*);
constexpr int kNvmlClockSm = 1;

struct Nvml {
    void* device = nullptr;
    NvmlClockInfo clock_info = nullptr;
    NvmlThrottle throttle = nullptr;

    Nvml() {
        void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) return;
        auto init = reinterpret_cast<NvmlInit>(dlsym(lib, "nvmlInit_v2"));
        auto by_index = reinterpret_cast<NvmlHandleByIndex>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
        clock_info = reinterpret_cast<NvmlClockInfo>(dlsym(lib, "nvmlDeviceGetClockInfo"));
        throttle = reinterpret_cast<NvmlThrottle>(dlsym(lib, "nvmlDeviceGetCurrentClocksThrottleReasons"));
        if (!init || !by_index || init() != 0 || by_index(0, &device) != 0) device = nullptr;
    }
};

const Nvml& nvml() {
    static const Nvml instance;
    return instance;
}

}  // namespace

int current_sm_clock_mhz() {
    const Nvml& n = nvml();
    unsigned mhz = 0;
    if (!n.device || !n.clock_info || n.clock_info(n.device, kNvmlClockSm, &mhz) != 0) return 0;
    return static_cast<int>(mhz);
}

std::uint64_t throttle_reasons() {
    const Nvml& n = nvml();
    unsigned long long reasons = 0;
    if (!n.device || !n.throttle || n.throttle(n.device, &reasons) != 0) return 0;
    return reasons;
}

bool is_throttling(std::uint64_t reasons) { return (reasons & ~std::uint64_t{0x3}) != 0; }

ClockWindow ClockWatch::finish() const {
    ClockWindow w;
    w.start_mhz = start_mhz_;
    w.end_mhz = current_sm_clock_mhz();
    w.throttle_reasons = throttle_reasons();  // after the end clock, as it always was read
    return w;
}

}  // namespace moba
