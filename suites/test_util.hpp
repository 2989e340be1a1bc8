// Helpers shared by the CPU test binaries.
#pragma once

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace moba::test {

// Expects `fn` to throw std::invalid_argument whose message contains `needle`.
template <class F>
void expect_error(F&& fn, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace moba::test
