// The limits shared by the tensor-core implementations' can_implement: a valid problem in bf16
// or fp16, and for the mma/wgmma tiles head dims 64 and 128. One wording of each refusal, with
// the implementation's name in it.
#pragma once

#include <exception>
#include <string_view>

#include <fmt/format.h>

#include "kernels/kernel_api.hpp"

namespace moba {

// problem.validate() passes and the dtype is bf16 or fp16.
inline Support valid_bf16_or_fp16(const Problem& problem, std::string_view impl) {
    try {
        problem.validate();
    } catch (const std::exception& e) {
        return Support::no(e.what());
    }
    if (problem.dtype != DType::bf16 && problem.dtype != DType::f16)
        return Support::no(fmt::format("{} implements bf16 and fp16, not {}", impl,
                                       to_string(problem.dtype)));
    return Support::yes();
}

// valid_bf16_or_fp16 and head dim 64 or 128.
inline Support valid_bf16_or_fp16_d64_or_d128(const Problem& problem, std::string_view impl) {
    if (Support s = valid_bf16_or_fp16(problem, impl); !s.ok) return s;
    if (problem.head_dim != 64 && problem.head_dim != 128)
        return Support::no(fmt::format("{} implements head dims 64 and 128, not {}", impl,
                                       problem.head_dim));
    return Support::yes();
}

}  // namespace moba
