// Host side of the float64 GPU truth (attention64.hpp, SEMANTICS.md §3.1): the selection's own
// check and the tiles of query rows, each with the union of the key blocks its rows attend.
// Pure functions of (problem, selection); no CUDA, tested on the CPU
// (suites/test_reference_gpu_plan.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.hpp"
#include "core/tensors.hpp"

namespace moba::ref::gpu {

// Scores of one tile: rows x keys doubles, at most this many (512 MiB) unless told otherwise.
inline constexpr std::int64_t kWorkspaceElems = std::int64_t{1} << 26;
// A tile is whole MoBA blocks of query rows, at least this many rows (clipped to the
// sequence), so that small blocks still give the GEMMs some rows.
inline constexpr int kMinTileRows = 256;

// Query rows [row0, row0 + rows) of one (sequence, query head), local to the sequence, and the
// union of the key blocks they attend: Plan::blocks[first_block, first_block + blocks),
// ascending local block indices. Column c of the tile's gathered keys is token
// union[c / Bs] * Bs + c % Bs of the sequence (only a sequence's last block can be partial, and
// it is the last of any union that holds it).
struct Tile {
    int seq = 0;
    int head = 0;
    std::int64_t row0 = 0;
    int rows = 0;
    std::int64_t first_block = 0;
    int blocks = 0;
    std::int64_t keys = 0;  // gathered keys: the union's tokens
};

struct Plan {
    std::vector<Tile> tiles;           // by sequence, then head, then row0
    std::vector<std::int32_t> blocks;  // every tile's union, concatenated
    std::int64_t max_keys = 0;         // largest tile's keys
    std::int64_t max_elems = 0;        // largest tile's rows * keys
    int max_rows = 0;
};

// The share of free device memory the truth lets itself need (the rest: the CUDA context's and
// cuBLAS's own allocations, fragmentation). Its own check and moba check's refusal both use it.
inline constexpr double kMaxFreeMemoryShare = 0.95;

// Device bytes the truth allocates (attention64.cu, run): q, k, v (and dout) in double with a float
// staging buffer, out, lse (dq, dk, dv, delta), one tile's scores (and dP) and gathered keys, the
// selection and the tiles' block lists. `plan` is the one it runs.
double device_bytes(const Problem& problem, const Plan& plan, bool with_selection, bool backward);
// Before gating has chosen a selection (moba check's refusal up front): the same with the largest
// tile the workspace cap allows (rows x keys = workspace_elems, keys = the longest sequence); the
// block lists (int32, a few MiB at most in the long suite) are left out.
double device_bytes_estimate(const Problem& problem, bool with_selection, bool backward,
                             std::int64_t workspace_elems = kWorkspaceElems);

// A selection [total, Hq, slots] of the form SEMANTICS.md §1 fixes: slots == problem.sel_slots(),
// per (token, head) strictly ascending local block indices <= the own block, then -1 padding,
// the own block present. Throws std::invalid_argument naming the token, head and slot.
void check_selection(const Problem& problem, const Selection& sel);

// Tiles covering every (sequence, query head, row) once. sel == nullptr: full causal attention
// (a tile's union is every block up to its last row's). A tile of whole blocks whose
// rows * keys exceeds workspace_elems is split into runs of workspace_elems / keys rows (each
// with its own union); throws std::invalid_argument when one row's union alone exceeds it, or
// when workspace_elems is not in [1, 2^31).
// Does not check the selection (check_selection does).
Plan plan_tiles(const Problem& problem, const Selection* sel,
                std::int64_t workspace_elems = kWorkspaceElems);

}  // namespace moba::ref::gpu
