// Layout probes: the kernel's building blocks (TMA tile maps, 128-byte swizzle, wgmma
// descriptors, accumulator and register-A fragment layouts) run in isolation on one CTA of two
// consumer warpgroups, so a layout bug shows up as a wrong matrix, not as a wrong attention.
// Used by suites/test_wgmma_layout_gpu.cpp. Each call synchronises the device.
#pragma once

#include <vector>

#include "core/problem.hpp"

namespace moba::wgmma::probe {

constexpr int kRows = 128;  // query rows of a CTA tile = keys of a K/V tile

// S = Q K^T through TMA + qk_gemm: q and k are [128, head_dim] row-major, values rounded to
// the dtype on upload; returns S [128, 128] row-major (fp32 accumulation).
std::vector<float> qk(DType dtype, int head_dim, const std::vector<float>& q, const std::vector<float>& k);

// S = Q K^T with Q gathered by gather_tile (cp.async into the 128-byte swizzle, as the sparse
// wave kernel loads an item's rows) instead of TMA: Q row r is q_source row rows[r] (q_source is
// [n, head_dim] row-major), or zeros where rows[r] < 0; rows has 128 entries, k is [128, head_dim].
std::vector<float> gathered_qk(DType dtype, int head_dim, const std::vector<float>& q_source,
                               const std::vector<int>& rows, const std::vector<float>& k);

// O = P V through p_fragments + pv_gemm (register A, V MN-major via TMA): p is [128, 128]
// (rounded to the dtype in registers exactly as the kernel rounds P), v is [128, head_dim];
// returns O [128, head_dim] row-major.
std::vector<float> pv(DType dtype, int head_dim, const std::vector<float>& p, const std::vector<float>& v);

}  // namespace moba::wgmma::probe
