// The one table of GPU implementations that the tests, the benchmarks and the command line
// iterate over. A new kernel is one new entry in registry.cpp; nothing else changes. Entries
// may also be added at run time (register_external): the Python package (harness/python/)
// registers PyTorch callables that way, so they are checked and timed by the same code.
// The float64 CPU reference and the same-precision baseline are not entries: they are the
// truth and the yardstick every entry is judged by (reference/).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/kernel_api.hpp"

namespace moba {

// The head dims an entry accepts, declared so `moba list` and the README can state them;
// test_readme checks the declaration against supports() for every head dim up to 512, so a
// listing can claim neither more nor less than the kernels take.
struct HeadDimSet {
    std::vector<int> listed;  // non-empty: exactly these (tensor-core instances)
    int max = 0;              // otherwise: every multiple of `multiple_of` up to max
    int multiple_of = 1;

    static HeadDimSet exactly(std::vector<int> head_dims);
    static HeadDimSet up_to(int max, int multiple_of = 1);
    int largest() const;
    bool contains(int head_dim) const;
    // "64, 128", "≤ 256" or "≤ 256, multiple of 8".
    std::string describe() const;
};

// How an entry's gating takes the block means (SPEC.md §2.7): exact (kept in fp32 or better,
// as SEMANTICS.md §2 says) or rounded to the input dtype before the product with q, as the
// official MoBA code does. A gating check counts differences that only the rounding explains
// apart from mismatches for an entry that declares `rounded`.
enum class BlockMeans { exact, rounded };
std::string_view to_string(BlockMeans means);
// "exact" or "rounded"; throws std::invalid_argument naming the text otherwise.
BlockMeans parse_block_means(std::string_view text);

struct Implementation {
    std::string name;       // by technique: "naive", "tiled_mma", "wgmma_moba", ...
    std::string technique;  // one line: what it does
    std::vector<DType> dtypes;
    HeadDimSet head_dims;
    // Computes full causal attention whatever the selection: the dense baselines of the
    // speedup tables. Checked only at zero sparsity (k >= n), where MoBA equals it.
    bool dense = false;
    // can_implement: shapes outside what the kernel implements are refused with a reason.
    std::function<Support(const Problem&)> can_implement;
    std::function<std::size_t(const Problem&)> gating_workspace_bytes;
    std::function<std::size_t(const Problem&)> attention_workspace_bytes;
    std::function<void(const GatingArgs&)> gating;       // empty: no gating of its own
    std::function<void(const AttentionArgs&)> forward;   // empty: a decode-only entry
    std::function<void(const AttentionArgs&)> backward;  // empty: forward only
    // Decode (SEMANTICS.md §9, DecodeArgs): one step of new tokens over KV caches, checked by
    // `moba check --suite decode` / `--q-lens` and timed by `moba decode-study`. decode_prepare
    // runs once per cache (what a server keeps from prefill: block means); empty when the step
    // keeps nothing. A dense entry's decode attends every cached key and ignores the selection.
    std::function<std::size_t(const Problem& cache, std::int64_t total_q)> decode_workspace_bytes;
    std::function<void(const DecodeArgs&)> decode_prepare;
    std::function<void(const DecodeArgs&)> decode;
    // The most new tokens per request its decode step takes; 0: any. PyTorch's SDPA attends a
    // lone new token to its whole cache with no mask, but a chunk needs the causal mask aligned
    // to the cache's end, which its fast backends do not take with grouped heads: q_len 1 only.
    int decode_max_q_len = 0;
    // Added by register_external (Python callables): not part of the built-in table that the
    // README lists.
    bool external = false;
    // Drops what the entry's runtime keeps between calls (PyTorch's cached allocator blocks, the
    // autograd graph kept for a backward): `moba bench` calls it before and after the entry's
    // run, so the device memory it measures for a run is that run's, not what an earlier run left
    // cached. Empty for the built-in kernels, which allocate nothing themselves.
    std::function<void()> release_memory;
    // Whether forward writes lse. PyTorch's scaled_dot_product_attention returns none: such an
    // entry's lse is recorded as not supported, never judged on the poisoned buffer.
    bool writes_lse = true;
    BlockMeans block_means = BlockMeans::exact;
    // How a command line reruns this entry; empty for the built-in ones (`moba`, `--impl NAME`).
    // An entry that `python -m moba` registered from `--impl file.py:fn` carries that tool and
    // the flags that register it again, so its records' `command` reruns it.
    std::string cli_tool;        // e.g. "python3 -m moba"
    std::string cli_impl_flags;  // e.g. "--impl examples/plain_moba.py:plain_moba --block-means rounded"

    bool has_forward() const { return static_cast<bool>(forward); }
    bool has_decode() const { return static_cast<bool>(decode); }
    bool has_gating() const { return static_cast<bool>(gating); }
    bool has_backward() const { return static_cast<bool>(backward); }
    // can_implement plus the dtype list and the largest head dim, with a reason naming the value
    // (finer head-dim refusals are can_implement's, whose reasons name the kernel's limit).
    Support supports(const Problem& problem) const;
    // supports(cache) for a decode step of up to max_q_len new tokens per request, with the
    // reason naming what is refused (no decode step, the q_len limit, the shape).
    Support supports_decode(const Problem& cache, int max_q_len) const;
};

// "split_decode is decode only: ...": why a prefill check, benchmark or op refuses an entry
// without a forward.
std::string decode_only_reason(const Implementation& impl);

// The built-in entries, then the external ones in the order they were registered.
const std::vector<Implementation>& registry();
// Appends an entry at run time (or replaces an external entry of the same name, in place, so
// pointers to it stay valid). Throws std::invalid_argument when the name is empty, is a
// built-in entry's, when it has neither a forward nor a decode step, or when
// kMaxExternalImplementations are already registered.
void register_external(Implementation impl);
inline constexpr std::size_t kMaxExternalImplementations = 64;
// nullptr when no entry has that name.
const Implementation* find_implementation(std::string_view name);

// The tool and the --impl flags that name an entry on a command line: `moba` and
// `--impl NAME`, or what an external entry carries (cli_tool, cli_impl_flags). A name no entry
// has (the baseline's) is the `moba` tool's.
struct CommandNaming {
    std::string tool;
    std::string impl_flags;
};
CommandNaming command_naming(std::string_view impl_name);
// "naive, ..." for messages.
std::string implementation_names();

}  // namespace moba
