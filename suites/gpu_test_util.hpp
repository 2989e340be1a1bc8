// Shared by the GPU test binaries: skip with a reason where no GPU is present.
#pragma once

#include <gtest/gtest.h>

#include "harness/device.hpp"

#define MOBA_REQUIRE_GPU()                                                          \
    do {                                                                            \
        if (!::moba::device_info().present)                                         \
            GTEST_SKIP() << "needs a GPU: " << ::moba::device_info().reason;       \
    } while (0)
