// How speed is counted (SEMANTICS.md §6): only attended (query, key) pairs count.
//   forward 4 * D * pairs, backward 2.5x forward, forward+backward 3.5x forward.
// Gating is counted separately: block means (D additions per key and kv head) and the scores
// (2 * D per past block, query and query head).
#pragma once

#include <string_view>

#include "core/problem.hpp"

namespace moba {

enum class Phase { fwd, bwd, fwdbwd };
std::string_view to_string(Phase phase);
Phase parse_phase(std::string_view text);  // throws std::invalid_argument naming the text

// Attended pairs summed over query heads. For MoBA a query i with own block b = i / Bs attends
// min(k - 1, b) full past blocks and i - b * Bs + 1 keys of its own block, whatever the data.
double moba_pairs(const Problem& problem);
double dense_pairs(const Problem& problem);  // L (L + 1) / 2 per sequence and query head
double attention_flops(const Problem& problem, double pairs, Phase phase);
double gating_flops(const Problem& problem);

}  // namespace moba
