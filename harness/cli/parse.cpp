#include "harness/cli/parse.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "harness/registry.hpp"

namespace moba::cli {
std::vector<std::string_view> split_list(std::string_view text) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = text.find(',', start);
        parts.push_back(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return parts;
}

std::vector<InputFamily> parse_input_families(std::string_view text) {
    if (text == "all") return all_input_families();
    std::vector<InputFamily> families;
    for (std::string_view part : split_list(text)) families.push_back(parse_input_family(part));
    return families;
}

std::vector<SanitizerTool> parse_sanitizer_tools(std::string_view text) {
    if (text == "all")
        return {SanitizerTool::memcheck, SanitizerTool::racecheck, SanitizerTool::synccheck,
                SanitizerTool::initcheck};
    std::vector<SanitizerTool> tools;
    for (std::string_view part : split_list(text)) tools.push_back(parse_sanitizer_tool(part));
    return tools;
}

std::vector<int> parse_lengths(std::string_view text, std::string_view what) {
    if (text.empty()) throw std::invalid_argument(fmt::format("{} is empty", what));
    std::vector<int> values;
    for (std::string_view part : split_list(text)) {
        std::string_view digits = part;
        std::int64_t multiplier = 1;
        if (!digits.empty() && (digits.back() == 'K' || digits.back() == 'k')) {
            multiplier = 1024;
            digits.remove_suffix(1);
        } else if (!digits.empty() && (digits.back() == 'M' || digits.back() == 'm')) {
            multiplier = 1024 * 1024;
            digits.remove_suffix(1);
        }
        std::int64_t value = 0;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (part.empty() || digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
            throw std::invalid_argument(fmt::format("{}: '{}' is not a length (in '{}')", what, part, text));
        if (value <= 0)
            throw std::invalid_argument(fmt::format("{}: '{}' must be positive (in '{}')", what, part, text));
        if (value > std::numeric_limits<int>::max() / multiplier)
            throw std::invalid_argument(fmt::format("{}: '{}' is too large (in '{}')", what, part, text));
        values.push_back(static_cast<int>(value * multiplier));
    }
    return values;
}

std::vector<std::string> parse_impl_list(std::string_view text) {
    std::vector<std::string> names;
    if (text == "all") {
        for (const auto& impl : registry()) names.push_back(impl.name);
        return names;
    }
    for (std::string_view part : split_list(text)) {
        if (!find_implementation(part))
            throw std::invalid_argument(fmt::format("unknown implementation '{}' (registered: {})",
                                                    part, implementation_names()));
        names.emplace_back(part);
    }
    return names;
}

void check_warmup_seconds(double seconds) {
    if (!(seconds >= 0) || !std::isfinite(seconds))
        throw std::invalid_argument(fmt::format("--warmup-seconds {} must be a finite number of seconds, 0 or more", seconds));
}

}  // namespace moba::cli
