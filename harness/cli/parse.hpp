// Parsing of command-line values, with errors that name the bad text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "harness/input_families.hpp"
#include "harness/sanitizer.hpp"

namespace moba::cli {

// "4096,1000,17" or "8K,32K,1M" (K = 1024, M = 1024*1024). Throws std::invalid_argument naming
// the bad element for empty elements, non-numbers, zero/negative values or overflow.
std::vector<int> parse_lengths(std::string_view text, std::string_view what);
// "naive,wgmma" -> names; "all" -> every registered implementation. Unknown names throw.
std::vector<std::string> parse_impl_list(std::string_view text);
// "a,b,,c" -> {"a", "b", "", "c"}: the elements between commas, empty ones kept (the callers'
// parsers name an empty element as bad text).
std::vector<std::string_view> split_list(std::string_view text);
// "normal,ties" -> families; "all" -> every family. Throws naming a bad name.
std::vector<InputFamily> parse_input_families(std::string_view text);
// --warmup-seconds (bench, paper): throws naming the value unless it is finite and 0 or more.
void check_warmup_seconds(double seconds);
// "memcheck,racecheck" -> tools; "all" -> every tool. Throws naming a bad name.
std::vector<SanitizerTool> parse_sanitizer_tools(std::string_view text);

}  // namespace moba::cli
