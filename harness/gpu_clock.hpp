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

}  // namespace moba
