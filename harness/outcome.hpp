// What happened to one check (CUTLASS profiler's dispositions). A check records its figures
// whatever the outcome.
#pragma once

#include <string_view>

namespace moba {

enum class Outcome { passed, incorrect, failed, not_supported, skipped };

std::string_view to_string(Outcome outcome);
Outcome parse_outcome(std::string_view text);  // throws std::invalid_argument
// incorrect (wrong numbers) and failed (crash, NaN/Inf, out of memory) make a run fail.
inline bool is_failure(Outcome o) { return o == Outcome::incorrect || o == Outcome::failed; }

}  // namespace moba
