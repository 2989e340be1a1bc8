// Inverse block lists and work items (block_lists.hpp): count, scan and scatter, or for
// deterministic lists one radix sort per wave; then count each list's items, scan, and expand
// them.
// count_entries / scatter_entries: one CTA per run of kPairsPerCta consecutive (token, head)
// selection rows, a warp-uniform loop over its rows and their slots. count_entries gives every
// entry its rank in its list while counting: a warp's entries bound for the same list are merged
// with __match_any_sync, so one atomic (with its return value) serves them all, and the lists
// the CTA's first sequence can reach (waves x its past blocks x kv heads, up to kWindowLists of
// them) are counted in shared memory first, then reserved with one global atomic per list and
// CTA. The ranks live in the workspace's scratch region until the scatter, which then only writes
// rows[offsets[list] + rank]: no atomics. Why: every row of a stretch of tokens picks among the
// same few past blocks, so a wave's lists sit in a few cache lines; one global atomic per (warp,
// list) made 128K x 32 heads' 8.4M entries queue on ~32 lines (0.87 ms to count 50 MB of
// selections at Figure 2b's 128K GQA, and 0.90 to scatter them with a second round of atomics,
// ncu, H200). Entries outside the window (another sequence, or blocks beyond it) take global
// atomics as before.
// expand_items: a warp reads 32 consecutive lists' item ranges at once (most lists are empty:
// blocks j < t of wave t never are listed), then strides over each non-empty one's items, so a
// hot list (block 0 is in almost every row) costs ceil(items / 32) coalesced stores, not a loop
// on one thread.
// Cost: three reads of sel (4 bytes per entry each), one shared atomic per (warp, window list),
// one global atomic per (CTA, window list) or (warp, other list), a rank written and read per
// entry (window entries' twice) and one 4-byte write of the row; the lists take two scans and
// two passes (4 * lists bytes each); 8 bytes per item.
// Deterministic lists skip count and scatter: per wave, one stable cub::DeviceRadixSort over the
// (list within the wave, row) pairs of every selection row in row order, over the key's bits
// only, leaves each list's rows ascending; each list's end is a binary search over the sorted
// keys (wave_keys, wave_offsets, wave_rows). A segmented sort of the scattered rows took 9.2 ms
// a pass at FlashMoBA's block 128 (229K lists, hot early blocks; ncu, H200). Cost per wave:
// one strided read of sel, the sort's passes over 8 bytes per selection row, a binary search per
// list, 4 bytes written per entry. Measured: kernels/NOTES.md ("Block lists counted per CTA" and
// the sections after it).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <stdexcept>
#include <string>

#include "core/cuda_check.hpp"
#include "kernels/moba/block_lists.hpp"
#include "kernels/moba/blocks.cuh"

namespace moba::sparse {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr std::int64_t kMaxCtas = 1 << 20;  // grid-stride loops beyond this

constexpr int kListThreads = 512;
constexpr int kPairsPerCta = 8192;   // selection rows per CTA of count / scatter
constexpr int kWindowLists = 12288;  // int32 counters in shared memory: 48 KB, 4 CTAs per SM

struct ListParams {
    std::int64_t total;       // packed tokens
    std::int64_t kbar_slots;  // slots of one wave: list = (t * kbar_slots + slot) * kv_heads + hk - kv0
    const std::int32_t* cu;   // [B+1]
    const std::int32_t* sel;  // [total, Hq, slots]
    int batch;
    int heads_q;
    int group;
    int block;
    int slots;
    int kv0;             // the pass's first kv head
    int kv_heads;        // the pass's kv heads
    int pass_heads;      // its query heads, kv_heads * group, from kv0 * group on
    int tokens_per_cta;  // max(1, kPairsPerCta / pass_heads)

    // List of wave t for block j of the sequence whose blocks start at kbar slot slot0, kv head
    // hk within the pass; with t = 0 it is also the list's index within its wave.
    __device__ std::int64_t list(int t, std::int64_t slot0, int j, int hk) const {
        return (t * kbar_slots + slot0 + j) * kv_heads + hk;
    }
};

// A CTA's rows (tokens [tokens_per_cta * blockIdx.x, + tokens_per_cta), all the pass's heads)
// and its window of lists: those of the sequence holding its first token, blocks 0 .. slots-1,
// every wave and kv head of the pass. Window list `local` = (t * slots + j) * kv_heads + hk.
struct CtaWindow {
    std::int64_t tok0;       // the CTA's first packed token
    std::int64_t pair_begin;
    std::int64_t pair_end;
    std::int64_t seq_start;  // first packed token of the window's sequence
    std::int64_t seq_end;    // first packed token past it
    std::int64_t slot0;      // kbar_base of the window's sequence
    int slots;               // 0: no window
    int size;                // waves * slots * kv_heads <= kWindowLists

    // Global list of window list `local`.
    __device__ std::int64_t list(const ListParams& p, int local) const {
        const int hk = local % p.kv_heads;
        const int rest = local / p.kv_heads;
        const int t = rest / slots;
        const int j = rest % slots;
        return p.list(t, slot0, j, hk);
    }
};

__device__ __forceinline__ CtaWindow cta_window(const ListParams& p) {
    CtaWindow w{};
    w.tok0 = static_cast<std::int64_t>(blockIdx.x) * p.tokens_per_cta;
    const std::int64_t tok1 = min(p.total, w.tok0 + p.tokens_per_cta);
    w.pair_begin = w.tok0 * p.pass_heads;
    w.pair_end = tok1 * p.pass_heads;
    const int b = find_sequence(p.cu, p.batch, w.tok0);
    w.seq_start = p.cu[b];
    w.seq_end = p.cu[b + 1];
    w.slot0 = kbar_base(p.cu, b, p.block);
    // The window's tokens have their past blocks below the own block of the last of them.
    const int own_hi = own_block(p.cu, b, min(tok1, w.seq_end) - 1, p.block);
    const int waves = p.slots - 1;
    w.slots = min(own_hi, kWindowLists / (waves * p.kv_heads));
    w.size = waves * w.slots * p.kv_heads;
    return w;
}

// One entry of a selection row: the list it joins (-1 where the entry is padding, the own
// block or a future block), its window list (-1 outside the window), the row value token *
// group + h % group, and its index (pair * waves + t) into per-entry buffers.
struct Entry {
    std::int64_t list;
    std::int64_t index;
    int local;
    std::int32_t row;
};

// The CTA's selection rows of the pass's query heads: calls visit(entry, lane) for each slot
// t < slots - 1 of the lane's row. Warp-uniform: every lane makes the same calls, as
// __match_any_sync needs. The last slot of a valid row holds the own block or padding, so it is
// never read: a malformed row (no own block) then still lists at most slots - 1 entries, one per
// wave, and cannot overrun the max_list_entries-sized buffers. Index math in 32 bits where the
// window's sequence bounds it (the CTA's rows, a token's offset in its sequence).
template <typename Visit>
__device__ __forceinline__ void for_each_entry(const ListParams& p, const CtaWindow& w,
                                               Visit&& visit) {
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const int waves = p.slots - 1;
    const auto cta_pairs = static_cast<int>(w.pair_end - w.pair_begin);
    for (int base = static_cast<int>(threadIdx.x) - lane; base < cta_pairs;
         base += static_cast<int>(blockDim.x)) {
        const int i = base + lane;
        const bool live = i < cta_pairs;
        const int token_in_cta = i / p.pass_heads;
        const std::int64_t token = w.tok0 + token_in_cta;
        const int h = p.kv0 * p.group + (i - token_in_cta * p.pass_heads);
        const bool in_window = token < w.seq_end;  // same sequence as the window's
        int own = 0;  // blocks 0 .. own-1 are past blocks
        std::int64_t slot0 = w.slot0;
        if (live && in_window) {
            own = static_cast<int>(token - w.seq_start) / p.block;
        } else if (live) {
            const int b = find_sequence(p.cu, p.batch, token);
            own = own_block(p.cu, b, token, p.block);
            slot0 = kbar_base(p.cu, b, p.block);
        }
        const int hk = h / p.group - p.kv0;  // within the pass
        Entry e{};
        e.row = static_cast<std::int32_t>(token * p.group + h % p.group);
        const std::int32_t* sel_row = p.sel + (live ? token * p.heads_q + h : 0) * p.slots;
        for (int t = 0; t < waves; ++t) {
            const int j = live ? sel_row[t] : -1;
            const bool listed = j >= 0 && j < own;
            e.list = listed ? p.list(t, slot0, j, hk) : -1;
            e.local = listed && in_window && j < w.slots ? (t * w.slots + j) * p.kv_heads + hk : -1;
            e.index = (w.pair_begin + i) * waves + t;
            visit(e, lane);
        }
    }
}

// Counts every list's entries and gives each entry its rank in its list (ranks[index], a
// position in 0 .. count-1; which entry gets which rank depends on atomic timing). Entries of
// the CTA's window take ranks from shared counters first; once the window is counted, one global
// atomicAdd per window list reserves the CTA's range of the list, and a second pass over the
// window's entries adds that range's start to their ranks.
__global__ void __launch_bounds__(kListThreads)
    count_entries(ListParams p, std::int32_t* counts, std::int32_t* ranks) {
    __shared__ int win[kWindowLists];
    const CtaWindow w = cta_window(p);
    for (int i = static_cast<int>(threadIdx.x); i < w.size; i += blockDim.x) win[i] = 0;
    __syncthreads();
    for_each_entry(p, w, [&](const Entry& e, int lane) {
        const unsigned same = __match_any_sync(kFullMask, static_cast<long long>(e.list));
        const int leader = __ffs(same) - 1;
        int first = 0;  // the group's first rank
        if (e.list >= 0 && lane == leader) {
            first = e.local >= 0 ? atomicAdd(&win[e.local], __popc(same))
                                 : atomicAdd(&counts[e.list], __popc(same));
        }
        first = __shfl_sync(kFullMask, first, leader);
        if (e.list >= 0) ranks[e.index] = first + __popc(same & ((1u << lane) - 1u));
    });
    if (w.size == 0) return;  // CTA-uniform
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < w.size; i += blockDim.x) {
        if (win[i] != 0) win[i] = atomicAdd(&counts[w.list(p, i)], win[i]);
    }
    __syncthreads();
    for_each_entry(p, w, [&](const Entry& e, int) {
        if (e.local >= 0) ranks[e.index] += win[e.local];
    });
}

// Each entry's row to its list's position offsets[list] + rank: no atomics.
__global__ void __launch_bounds__(kListThreads)
    scatter_entries(ListParams p, const std::int32_t* offsets, const std::int32_t* ranks,
                    std::int32_t* rows) {
    const CtaWindow w = cta_window(p);
    for_each_entry(p, w, [&](const Entry& e, int) {
        if (e.list >= 0) rows[offsets[e.list] + ranks[e.index]] = e.row;
    });
}

// ---- deterministic lists: one stable radix sort per wave -------------------------------------
// Wave t's entries in (token, head) order as (key, value) = (list within the wave, row); rows with
// no entry in this wave get key_none (lists_per_wave), which sorts after every list. A stable
// sort by key then leaves each list's rows ascending, as the host emulation has them.
__global__ void __launch_bounds__(kThreads)
    wave_keys(ListParams p, int t, std::uint32_t key_none, std::uint32_t* keys, std::int32_t* values) {
    const std::int64_t pairs = p.total * p.pass_heads;
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
         i += stride) {
        const std::int64_t token = i / p.pass_heads;
        const int h = p.kv0 * p.group + static_cast<int>(i - token * p.pass_heads);
        const int b = find_sequence(p.cu, p.batch, token);
        const int own = own_block(p.cu, b, token, p.block);
        const int j = p.sel[(token * p.heads_q + h) * p.slots + t];
        const int hk = h / p.group - p.kv0;
        keys[i] = j >= 0 && j < own
                      ? static_cast<std::uint32_t>(p.list(0, kbar_base(p.cu, b, p.block), j, hk))
                      : key_none;
        values[i] = static_cast<std::int32_t>(token * p.group + h % p.group);
    }
}

// After wave t's sort: the ends of its lists, wave_offsets[l] = wave_offsets[0] + (keys below l)
// for l = 1 .. lists_per_wave. wave_offsets[0], the wave's start, was written before (the end of
// wave t-1's last list, or 0).
__global__ void __launch_bounds__(kThreads)
    wave_offsets(const std::uint32_t* keys, std::int64_t n, std::int64_t lists_per_wave,
                 std::int32_t* wave_offsets) {
    const std::int32_t start = wave_offsets[0];
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t l = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x + 1;
         l <= lists_per_wave; l += stride) {
        std::int64_t lo = 0;  // lower bound of l in keys[0 .. n)
        std::int64_t hi = n;
        while (lo < hi) {
            const std::int64_t mid = lo + (hi - lo) / 2;
            if (keys[mid] < static_cast<std::uint32_t>(l)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        wave_offsets[l] = start + static_cast<std::int32_t>(lo);
    }
}

// The wave's sorted rows after those of the waves before it; the entries come first (key_none
// sorts last).
__global__ void __launch_bounds__(kThreads)
    wave_rows(const std::uint32_t* keys, const std::int32_t* values, std::int64_t n,
              std::uint32_t key_none, const std::int32_t* wave_offsets, std::int32_t* rows) {
    const std::int32_t start = wave_offsets[0];
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        if (keys[i] != key_none) rows[start + i] = values[i];
    }
}

// items[l] = ceil(list l's entries / tile_rows) for l < lists, items[lists] = 0, so the
// exclusive scan of items[0 .. lists] ends with the item count.
__global__ void __launch_bounds__(kThreads)
    count_items(std::int64_t lists, int tile_rows, const std::int32_t* offsets,
                std::int32_t* items) {
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t l = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         l <= lists; l += stride) {
        const int n = l < lists ? offsets[l + 1] - offsets[l] : 0;
        items[l] = n / tile_rows + (n % tile_rows != 0 ? 1 : 0);
    }
}

// first_item [lists + 1]: exclusive scan of the item counts. Warp w of the grid takes lists
// 32w .. 32w+31 (grid-stride), one per lane, and then writes every non-empty one's items with
// all 32 lanes. Threads 0 .. waves also write wave_items.
__global__ void __launch_bounds__(kThreads)
    expand_items(std::int64_t lists, std::int64_t lists_per_wave, int waves, int tile_rows,
                 const std::int32_t* first_item, std::int32_t* item_list, std::int32_t* item_start,
                 std::int32_t* wave_items) {
    const int lane = static_cast<int>(threadIdx.x) % kWarp;
    const std::int64_t thread = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t t = thread; t <= waves; t += stride) {
        wave_items[t] = first_item[t * lists_per_wave];
    }
    for (std::int64_t base = thread - lane; base < lists; base += stride) {
        const std::int64_t l = base + lane;
        const int first = l < lists ? first_item[l] : 0;
        const int last = l < lists ? first_item[l + 1] : 0;
        unsigned pending = __ballot_sync(kFullMask, last > first);
        while (pending != 0) {
            const int src = __ffs(pending) - 1;
            pending &= pending - 1;
            const int begin = __shfl_sync(kFullMask, first, src);
            const int end = __shfl_sync(kFullMask, last, src);
            const auto list = static_cast<std::int32_t>(base + src);
            for (int i = begin + lane; i < end; i += kWarp) {
                item_list[i] = list;
                item_start[i] = (i - begin) * tile_rows;
            }
        }
    }
}

unsigned grid_for(std::int64_t threads) {
    const std::int64_t ctas = (threads + kThreads - 1) / kThreads;
    return static_cast<unsigned>(ctas < kMaxCtas ? ctas : kMaxCtas);
}

std::int64_t saturating_mul(std::int64_t a, std::int64_t b) {
    std::int64_t product = 0;
    return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

// Bits of the deterministic sort's keys: enough for key_none = lists_per_wave (>= 1).
int key_bits(std::int64_t lists_per_wave) {
    int bits = 0;
    while (bits < 32 && (lists_per_wave >> bits) != 0) ++bits;
    return bits;
}

// Byte offsets of the workspace's parts, each 256-byte aligned. With no wave only offsets and
// wave_items have a size.
struct Layout {
    std::int64_t lists = 0;
    std::int64_t lists_per_wave = 0;
    int waves = 0;
    std::int64_t max_entries = 0;
    std::int64_t max_items = 0;
    std::size_t counts = 0;      // [lists + 1] int32: entry counts, then item counts
    std::size_t offsets = 0;     // [lists + 1] int32
    std::size_t first_item = 0;  // [lists + 1] int32
    std::int64_t wave_pairs = 0;  // selection rows of the pass: total * kv_heads * group
    std::size_t rows = 0;        // [max_entries] int32
    std::size_t scratch = 0;     // the entries' ranks [max_entries] int32, or the deterministic
                                 // sort's keys and values, two buffers each [wave_pairs]
    std::size_t wave_buffer = 0; // bytes of one of those four
    std::size_t item_list = 0;   // [max_items] int32
    std::size_t item_start = 0;  // [max_items] int32
    std::size_t wave_items = 0;  // [waves + 1] int32
    std::size_t temp = 0;        // cub temporary storage
    std::size_t temp_bytes = 0;
    std::size_t total = 0;
};

std::size_t align256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

std::size_t int32_bytes(std::int64_t n) {
    return align256(static_cast<std::size_t>(n) * sizeof(std::int32_t));
}

// Requires block_lists_can_implement(problem, tile_rows) and 1 <= kv_heads <= heads_kv. A pass
// of kv_heads kv heads holds the entries, lists and items of the whole problem's bounds scaled
// by kv_heads / heads_kv (exactly: each bound is a sum over kv heads of equal terms), so the
// whole problem's int32 checks cover every pass.
Layout layout(const Problem& problem, int tile_rows, int kv_heads) {
    Layout l;
    l.waves = problem.sel_slots() - 1;
    l.lists_per_wave = kbar_slots(problem.total_tokens(), problem.block, problem.batch()) * kv_heads;
    l.lists = l.lists_per_wave * l.waves;
    l.wave_pairs = problem.total_tokens() * problem.group() * kv_heads;
    l.max_entries = l.wave_pairs * l.waves;
    l.max_items = l.max_entries / tile_rows + l.lists;
    l.wave_buffer = int32_bytes(l.wave_pairs);

    if (l.waves > 0) {
        std::size_t scan_bytes = 0;
        MOBA_CUDA_CALL(cub::DeviceScan::ExclusiveSum(
            nullptr, scan_bytes, static_cast<const std::int32_t*>(nullptr),
            static_cast<std::int32_t*>(nullptr), static_cast<int>(l.lists + 1)));
        std::size_t sort_bytes = 0;
        cub::DoubleBuffer<std::uint32_t> keys(nullptr, nullptr);
        cub::DoubleBuffer<std::int32_t> values(nullptr, nullptr);
        MOBA_CUDA_CALL(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys, values,
                                                       static_cast<int>(l.wave_pairs), 0,
                                                       key_bits(l.lists_per_wave)));
        l.temp_bytes = scan_bytes > sort_bytes ? scan_bytes : sort_bytes;
    }

    const std::int64_t list_ends = l.waves > 0 ? l.lists + 1 : 0;
    l.offsets = 0;  // offsets[0] exists even with no wave
    l.counts = l.offsets + int32_bytes(l.lists + 1);
    l.first_item = l.counts + int32_bytes(list_ends);
    l.rows = l.first_item + int32_bytes(list_ends);
    l.scratch = l.rows + int32_bytes(l.max_entries);
    l.item_list = l.scratch + std::max(int32_bytes(l.max_entries), 4 * l.wave_buffer);
    l.item_start = l.item_list + int32_bytes(l.max_items);
    l.wave_items = l.item_start + int32_bytes(l.max_items);
    l.temp = l.wave_items + int32_bytes(l.waves + 1);
    l.total = l.temp + align256(l.temp_bytes);
    return l;
}

template <typename U>
U* at(void* workspace, std::size_t offset) {
    return reinterpret_cast<U*>(static_cast<unsigned char*>(workspace) + offset);
}

}  // namespace

std::int64_t max_list_entries(const Problem& problem) {
    return saturating_mul(problem.total_tokens() * problem.heads_q, problem.sel_slots() - 1);
}

std::int64_t block_list_count(const Problem& problem) {
    const std::int64_t per_wave =
        kbar_slots(problem.total_tokens(), problem.block, problem.batch()) * problem.heads_kv;
    return saturating_mul(per_wave, problem.sel_slots() - 1);
}

std::int64_t max_block_items(const Problem& problem, int tile_rows) {
    if (tile_rows < 1) throw std::invalid_argument("block lists: tile_rows must be at least 1");
    const std::int64_t chunks = max_list_entries(problem) / tile_rows;
    const std::int64_t lists = block_list_count(problem);
    return chunks > INT64_MAX - lists ? INT64_MAX : chunks + lists;
}

Support block_lists_can_implement(const Problem& problem, int tile_rows) {
    try {
        problem.validate();
    } catch (const std::exception& e) {
        return Support::no(e.what());
    }
    if (tile_rows < 1) {
        return Support::no("block lists: tile_rows " + std::to_string(tile_rows) +
                           " must be at least 1");
    }
    // Row values token * group + h % group < total * Hq <= entries whenever there is a wave, so
    // the entries' bound covers them too.
    const std::int64_t entries = max_list_entries(problem);
    if (entries > INT_MAX) {
        return Support::no("block lists: up to " + std::to_string(entries) +
                           " entries exceed the int32 offsets");
    }
    const std::int64_t lists = block_list_count(problem);
    if (lists >= INT_MAX) {  // offsets has lists + 1 int32 indices
        return Support::no("block lists: " + std::to_string(lists) +
                           " lists (waves x kbar slots x kv heads) exceed the int32 range");
    }
    const std::int64_t items = max_block_items(problem, tile_rows);
    if (items > INT_MAX) {
        return Support::no("block lists: up to " + std::to_string(items) +
                           " work items exceed the int32 range");
    }
    return Support::yes();
}

std::size_t block_lists_workspace_bytes(const Problem& problem, int tile_rows) {
    if (!block_lists_can_implement(problem, tile_rows).ok) return 0;
    return layout(problem, tile_rows, problem.heads_kv).total;
}

std::size_t block_lists_workspace_bytes(const Problem& problem, int tile_rows, int kv_heads) {
    if (!block_lists_can_implement(problem, tile_rows).ok) return 0;
    if (kv_heads < 1 || kv_heads > problem.heads_kv) {
        throw std::invalid_argument("block lists: a pass of " + std::to_string(kv_heads) +
                                    " kv heads, not 1 to " + std::to_string(problem.heads_kv));
    }
    return layout(problem, tile_rows, kv_heads).total;
}

BlockLists build_block_lists(const Problem& problem, const std::int32_t* cu_seqlens,
                             const std::int32_t* sel, int tile_rows, void* workspace,
                             bool deterministic, cudaStream_t stream, const HeadPass& pass) {
    const Support support = block_lists_can_implement(problem, tile_rows);
    if (!support.ok) throw std::invalid_argument("tiled_mma " + support.reason);
    if (pass.kv0 < 0 || pass.kv_heads < 1 || pass.kv0 + pass.kv_heads > problem.heads_kv ||
        pass.group != problem.group()) {
        throw std::invalid_argument("block lists: the pass of kv heads [" + std::to_string(pass.kv0) +
                                    ", " + std::to_string(pass.kv0 + pass.kv_heads) +
                                    ") is not inside the problem's " +
                                    std::to_string(problem.heads_kv));
    }
    if (workspace == nullptr) {
        throw std::invalid_argument(
            "tiled_mma block lists need a workspace of " +
            std::to_string(block_lists_workspace_bytes(problem, tile_rows, pass.kv_heads)) + " bytes");
    }
    const Layout l = layout(problem, tile_rows, pass.kv_heads);
    auto* counts = at<std::int32_t>(workspace, l.counts);
    auto* offsets = at<std::int32_t>(workspace, l.offsets);
    auto* first_item = at<std::int32_t>(workspace, l.first_item);
    auto* rows = at<std::int32_t>(workspace, l.rows);
    auto* ranks = at<std::int32_t>(workspace, l.scratch);
    auto* item_list = at<std::int32_t>(workspace, l.item_list);
    auto* item_start = at<std::int32_t>(workspace, l.item_start);
    auto* wave_items = at<std::int32_t>(workspace, l.wave_items);
    void* temp = at<unsigned char>(workspace, l.temp);
    BlockLists out{offsets,    rows,       l.lists,    l.lists_per_wave, l.waves,  pass.kv0,
                   pass.kv_heads, item_list, item_start, wave_items, l.max_items};

    if (l.waves == 0) {  // one slot per row: only own blocks, no list and no item
        MOBA_CUDA_CALL(cudaMemsetAsync(offsets, 0, sizeof(std::int32_t), stream));
        MOBA_CUDA_CALL(cudaMemsetAsync(wave_items, 0, sizeof(std::int32_t), stream));
        return out;
    }

    const ListParams p{problem.total_tokens(),
                       kbar_slots(problem.total_tokens(), problem.block, problem.batch()),
                       cu_seqlens,
                       sel,
                       problem.batch(),
                       problem.heads_q,
                       problem.group(),
                       problem.block,
                       problem.sel_slots(),
                       pass.kv0,
                       pass.kv_heads,
                       pass.q_heads(),
                       std::max(1, kPairsPerCta / pass.q_heads())};
    // total <= INT_MAX (Problem::validate), so the grid fits its x limit.
    const auto pair_ctas = static_cast<unsigned>((p.total + p.tokens_per_cta - 1) / p.tokens_per_cta);
    const auto list_ends = static_cast<int>(l.lists + 1);

    std::size_t temp_bytes = l.temp_bytes;
    if (deterministic) {
        // One stable radix sort per wave over its (list, row) pairs in row order; each wave's
        // lists and rows follow the previous wave's.
        auto* keys_a = at<std::uint32_t>(workspace, l.scratch);
        auto* keys_b = at<std::uint32_t>(workspace, l.scratch + l.wave_buffer);
        auto* values_a = at<std::int32_t>(workspace, l.scratch + 2 * l.wave_buffer);
        auto* values_b = at<std::int32_t>(workspace, l.scratch + 3 * l.wave_buffer);
        const auto key_none = static_cast<std::uint32_t>(l.lists_per_wave);
        MOBA_CUDA_CALL(cudaMemsetAsync(offsets, 0, sizeof(std::int32_t), stream));
        for (int t = 0; t < l.waves; ++t) {
            wave_keys<<<grid_for(l.wave_pairs), kThreads, 0, stream>>>(p, t, key_none, keys_a, values_a);
            MOBA_CHECK_LAUNCH();
            cub::DoubleBuffer<std::uint32_t> keys(keys_a, keys_b);
            cub::DoubleBuffer<std::int32_t> values(values_a, values_b);
            temp_bytes = l.temp_bytes;
            MOBA_CUDA_CALL(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, values,
                                                           static_cast<int>(l.wave_pairs), 0,
                                                           key_bits(l.lists_per_wave), stream));
            std::int32_t* wave_offsets_at = offsets + t * l.lists_per_wave;
            wave_offsets<<<grid_for(l.lists_per_wave), kThreads, 0, stream>>>(
                keys.Current(), l.wave_pairs, l.lists_per_wave, wave_offsets_at);
            MOBA_CHECK_LAUNCH();
            wave_rows<<<grid_for(l.wave_pairs), kThreads, 0, stream>>>(
                keys.Current(), values.Current(), l.wave_pairs, key_none, wave_offsets_at, rows);
            MOBA_CHECK_LAUNCH();
        }
    } else {
        MOBA_CUDA_CALL(cudaMemsetAsync(counts, 0, int32_bytes(l.lists + 1), stream));
        count_entries<<<pair_ctas, kListThreads, 0, stream>>>(p, counts, ranks);
        MOBA_CHECK_LAUNCH();
        MOBA_CUDA_CALL(
            cub::DeviceScan::ExclusiveSum(temp, temp_bytes, counts, offsets, list_ends, stream));
        scatter_entries<<<pair_ctas, kListThreads, 0, stream>>>(p, offsets, ranks, rows);
        MOBA_CHECK_LAUNCH();
    }

    count_items<<<grid_for(l.lists + 1), kThreads, 0, stream>>>(l.lists, tile_rows, offsets,
                                                                counts);
    MOBA_CHECK_LAUNCH();
    temp_bytes = l.temp_bytes;
    MOBA_CUDA_CALL(
        cub::DeviceScan::ExclusiveSum(temp, temp_bytes, counts, first_item, list_ends, stream));
    // lists + 1 > waves threads: one per list, and enough for wave_items.
    expand_items<<<grid_for(l.lists + 1), kThreads, 0, stream>>>(l.lists, l.lists_per_wave, l.waves,
                                                                 tile_rows, first_item, item_list,
                                                                 item_start, wave_items);
    MOBA_CHECK_LAUNCH();
    return out;
}

}  // namespace moba::sparse
