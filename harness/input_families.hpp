// Named input families: seeded transformations of the N(0,1) draw that give the attention
// structure random inputs never have (a dominant past block, an attention sink, a recency
// trend, a sharp softmax, large values, exact gating ties). Definitions: SEMANTICS.md
// "Input families"; make_inputs (inputs.hpp) draws, applies one, and rounds.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"

namespace moba {

enum class InputFamily { normal, dominant, sink, recency, peaked, large_v, ties };

std::string_view to_string(InputFamily family);
// Accepts exactly the names to_string gives. Throws std::invalid_argument naming the bad text
// and listing the valid names.
InputFamily parse_input_family(std::string_view text);
// Every family, `normal` first, in declaration order.
std::vector<InputFamily> all_input_families();

namespace detail {

// Transforms the unrounded N(0,1) draw `in` (q, k, v, dout of `problem`) in place as `family`
// says; the caller rounds afterwards. Random choices come from a stream derived from `seed`
// and the family, not from the draw's stream. `normal` leaves `in` untouched.
// Every transform of q is the same for every row, so in.q may hold the rows of any subset of
// tokens (make_query_rows_and_keys); v and dout may be empty when only q and k are wanted.
void apply_family(InputFamily family, const Problem& problem, std::uint64_t seed,
                  HostInputs& in);

}  // namespace detail
}  // namespace moba
