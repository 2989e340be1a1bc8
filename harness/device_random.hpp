// Seeded random tensors drawn on the device, for benchmark sizes where drawing on the host
// would take longer than the measurement (1M tokens x 32 heads x 128 is 4G values). Counter
// based: element i of tensor `stream` depends only on (seed, stream, i), whatever the grid.
// Checks read the values back from the device rather than regenerating them.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/problem.hpp"

namespace moba {

// Standard normal values rounded to `dtype`, written to dst[0..n).
void fill_normal_device(DType dtype, void* dst, std::int64_t n, std::uint64_t seed,
                        std::uint64_t stream, cudaStream_t cuda_stream);

}  // namespace moba
