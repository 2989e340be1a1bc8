// Head passes (head_passes.hpp): the accumulator budget and the pass size.
#include "kernels/moba/head_passes.hpp"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace moba::sparse {

std::size_t accumulator_budget_bytes() {
    // 4 GiB: the accumulators of the paper's 128K settings (2.03 GiB at 32 heads) stay in one
    // pass, as measured before the passes existed; at 1M tokens with 32 / 8 heads each kv group
    // (2.03 GiB) is its own pass, which keeps MoBA within 10% of dense's memory there.
    constexpr std::size_t kDefaultMiB = 4096;
    const char* text = std::getenv(kAccumulatorBudgetEnv);
    if (text == nullptr || *text == '\0') return kDefaultMiB << 20;
    errno = 0;
    char* end = nullptr;
    const long long mib = std::strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || !std::isdigit(static_cast<unsigned char>(*text)) ||
        mib > (LLONG_MAX >> 20)) {
        throw std::invalid_argument(std::string("MOBA_ACCUMULATOR_BUDGET_MIB must be a whole "
                                                "number of MiB (0 or more), not '") + text + "'");
    }
    return static_cast<std::size_t>(mib) << 20;
}

int kv_heads_per_pass(const Problem& problem) {
    problem.validate();
    const auto rows_per_kv_head =
        static_cast<std::size_t>(problem.total_tokens()) * static_cast<std::size_t>(problem.group());
    const std::size_t bytes_per_row = static_cast<std::size_t>(problem.head_dim) * sizeof(float) + 2 * sizeof(float);
    const std::size_t per_kv_head = rows_per_kv_head * bytes_per_row;
    if (per_kv_head == 0) return problem.heads_kv;
    const std::size_t fit = accumulator_budget_bytes() / per_kv_head;
    const int most = static_cast<int>(std::clamp<std::size_t>(fit, 1, static_cast<std::size_t>(problem.heads_kv)));
    // As few passes as the budget allows, evened out: 32 kv heads of which 31 fit run as 16 + 16,
    // not 31 + 1 (a one-head pass would pay every launch's fill and tail for little work).
    const int passes = (problem.heads_kv + most - 1) / most;
    return (problem.heads_kv + passes - 1) / passes;
}

}  // namespace moba::sparse
