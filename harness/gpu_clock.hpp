// SM clock and throttle state through NVML, loaded at run time (dlopen) so the harness runs
// on machines without the driver's libnvidia-ml (CI): there every query reports "unknown".
#pragma once

#include <cstdint>

namespace moba {

// Current SM clock of device 0 in MHz, or 0 when NVML is unavailable.
int current_sm_clock_mhz();
// NVML's current clock-event (throttle) reason bits, or 0 when unavailable. Bits other than
// "GPU idle" (0x1) and "applications clocks setting" (0x2) mean the clock is being held down.
std::uint64_t throttle_reasons();
bool is_throttling(std::uint64_t reasons);

// The SM clock around a timed stretch, as records report it: the clock before and after, and
// the throttle reasons at the end. Throttled when the clock fell by more than 10 % or NVML
// names a reason that holds it down.
struct ClockWindow {
    int start_mhz = 0;
    int end_mhz = 0;
    std::uint64_t throttle_reasons = 0;
    bool throttled() const {
        return (start_mhz > 0 && end_mhz < 0.9 * start_mhz) || is_throttling(throttle_reasons);
    }
};

// Reads the start clock when made and the rest at finish().
class ClockWatch {
public:
    ClockWatch() : start_mhz_(current_sm_clock_mhz()) {}
    ClockWindow finish() const;

private:
    int start_mhz_;
};

}  // namespace moba
