#include "harness/outcome.hpp"

#include <stdexcept>
#include <string>

namespace moba {

std::string_view to_string(Outcome outcome) {
    switch (outcome) {
        case Outcome::passed: return "passed";
        case Outcome::incorrect: return "incorrect";
        case Outcome::failed: return "failed";
        case Outcome::not_supported: return "not supported";
        case Outcome::skipped: return "skipped";
    }
    return "unknown";
}

Outcome parse_outcome(std::string_view text) {
    for (Outcome o : {Outcome::passed, Outcome::incorrect, Outcome::failed, Outcome::not_supported,
                      Outcome::skipped})
        if (to_string(o) == text) return o;
    throw std::invalid_argument("unknown outcome '" + std::string(text) + "'");
}

}  // namespace moba
