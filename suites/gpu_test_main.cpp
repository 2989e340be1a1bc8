// main() of the GPU test binaries. Without a GPU, no test runs and the binary prints one
// marker line that ctest's SKIP_REGULAR_EXPRESSION turns into "Skipped". The skip is decided
// for the whole process before any test runs, so it can never mask a failing test.
#include <cstdio>

#include <gtest/gtest.h>

#include "harness/device.hpp"

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (!::testing::GTEST_FLAG(list_tests) && !moba::device_info().present) {
        std::printf("MOBA_NO_GPU: every GPU test skipped: %s\n", moba::device_info().reason.c_str());
        return 0;
    }
    return RUN_ALL_TESTS();
}
