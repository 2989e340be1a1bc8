// The split-KV attention: every work item (a chunk of at most `span` keys of one request and
// kv head, params.cuh) is read from HBM once and serves every (new token, head of the group)
// that attends it, each getting the chunk's partial softmax (m, l, o) in its fixed slot.
// - A persistent grid walks the items (their count lives on the device, after the union).
// - Per item, the CTA lists the interested rows (MoBA: the chunk's block is in the row's
//   selection; both: the token is at or after the chunk's first key), 128 candidates at a time,
//   and runs them in passes of up to 8 rows: decode's usual group of <= 8 heads shares one read
//   of the chunk; more rows re-read it, from L2 by then.
// - K and V stream through shared memory in 64-key tiles, two stages of cp.async (16-byte,
//   coalesced); the hot loop is tile.cuh.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/decode/device.cuh"
#include "kernels/decode/launch.hpp"
#include "kernels/decode/tile.cuh"

namespace moba::split_decode::detail {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarp;
constexpr int kStages = 2;

template <typename T>
struct AttendParams {
    Batch batch;
    Plan plan;
    KeyRows rows;
    const T* q;
    const T* k;
    const T* v;
};

// Dynamic shared memory: the K/V stages (also the warps' combine buffer after a pass).
template <int D, typename T>
__host__ __device__ constexpr std::size_t smem_bytes() {
    return static_cast<std::size_t>(kStages) * 2 * kTileKeys * D * sizeof(T);
}

// Keys [k0, k1) of request r, kv head g; `unit` is the MoBA block or the dense unit.
struct Item {
    int r, g, unit, chunk, k0, k1;
};

// An interested row: its q/out row, head, position and partial slot.
struct RowRef {
    std::int64_t partial;
    std::int64_t row;
    int head;
    int pos;
};

template <typename T>
__device__ Item locate(const AttendParams<T>& p, std::int64_t index) {
    const Batch& b = p.batch;
    const Plan& plan = p.plan;
    const int rg = last_at_most(b.batch * b.heads_kv, index, [&](int c) { return plan.item_prefix[c]; });
    const std::int64_t local = index - plan.item_prefix[rg];
    Item it{rg / b.heads_kv, rg % b.heads_kv, static_cast<int>(local / plan.chunks_per_block),
            static_cast<int>(local % plan.chunks_per_block), 0, 0};
    const int k_len = b.cu_k[it.r + 1] - b.cu_k[it.r];
    std::int64_t k0 = 0;
    std::int64_t k1 = 0;
    if (plan.dense) {
        k0 = static_cast<std::int64_t>(it.unit) * plan.span;
        k1 = k0 + plan.span;
    } else {
        it.unit = plan.union_list[union_base(b, it.r, it.g, ceil_div(k_len, b.block)) + it.unit];
        const std::int64_t block_start = static_cast<std::int64_t>(it.unit) * b.block;
        k0 = block_start + static_cast<std::int64_t>(it.chunk) * plan.span;
        k1 = k0 + plan.span < block_start + b.block ? k0 + plan.span : block_start + b.block;
    }
    // A chunk past the end of a partial last block comes out empty (k0 >= k1).
    it.k0 = static_cast<int>(k0 < k_len ? k0 : k_len);
    it.k1 = static_cast<int>(k1 < k_len ? k1 : k_len);
    return it;
}

// One pass: all warps carry the same kRows (<= kRowsPerPass) listed rows, each warp every
// fourth 8-key step of every tile, so even a lone row (MHA decode) keeps four warps busy; then
// the warps' running softmaxes are combined in warp order into the rows' partials.
template <typename T, int D, int kRows>
__device__ void attend_pass(const AttendParams<T>& p, const Item& it, const RowRef* rows,
                            T* stages, float* qs, int lane, int warp) {
    constexpr int kE = D / kWarp;
    constexpr int kStageElems = 2 * kTileKeys * D;  // K tile, then V tile
    const Batch& b = p.batch;
    // The rows' q as fp32 (read after the tile loop's first barrier).
    for (int i = static_cast<int>(threadIdx.x); i < kRows * (D / 2); i += kThreads) {
        const int rr = i / (D / 2);
        const int d = i % (D / 2) * 2;
        float pair[2];
        load_as_float<T, 2>(p.q + (rows[rr].row * b.heads_q + rows[rr].head) * D + d, pair);
        qs[rr * D + d] = pair[0];
        qs[rr * D + d + 1] = pair[1];
    }
    int pos[kRows];
    RowState<D, kRows> st;
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) {
        pos[rr] = rows[rr].pos;
        st.m[rr] = -INFINITY;
        st.l[rr] = 0.0f;
#pragma unroll
        for (int e = 0; e < kE; ++e) st.o[rr][e] = 0.0f;
    }
    const int max_pos = rows[kRows - 1].pos;  // rows ascend by token
    const int k_end = min(it.k1, max_pos + 1);
    const int tiles = ceil_div(k_end - it.k0, kTileKeys);
    stage_tile<T, D, kThreads>(p.rows, p.k, p.v, b.heads_kv, it.r, it.g, it.k0,
                               min(kTileKeys, k_end - it.k0), stages, stages + kTileKeys * D);
    cp_async_commit();
    for (int tile = 0; tile < tiles; ++tile) {
        const int first = it.k0 + tile * kTileKeys;
        if (tile + 1 < tiles) {
            T* next = stages + (tile + 1) % kStages * kStageElems;
            stage_tile<T, D, kThreads>(p.rows, p.k, p.v, b.heads_kv, it.r, it.g, first + kTileKeys,
                                       min(kTileKeys, k_end - first - kTileKeys), next,
                                       next + kTileKeys * D);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // the tile (and qs) are in shared memory for every warp
        const T* src = stages + tile % kStages * kStageElems;
        consume_tile<T, D, kRows>(src, src + kTileKeys * D, qs, first, min(kTileKeys, k_end - first),
                                  pos, max_pos, warp, kWarps, b.scale, lane, st);
        __syncthreads();  // every warp is done with the stage before it is refilled
    }
    // Combine the warps through the now idle stages: [kWarps, kRowsPerPass, D + 4] floats,
    // o then (m, l); the stride keeps 16-byte alignment.
    constexpr int kStride = D + 4;
    static_assert(kWarps * kRowsPerPass * kStride * sizeof(float) <= smem_bytes<D, T>(),
                  "the combine buffer fits in the stages");
    float* red = reinterpret_cast<float*>(stages);
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) {
        float l_sum = st.l[rr];  // lanes 4k..4k+3 hold key k's share
#pragma unroll
        for (int offset = 4; offset < kWarp; offset <<= 1)
            l_sum += __shfl_xor_sync(kFullMask, l_sum, offset);
        float* mine = red + (warp * kRowsPerPass + rr) * kStride;
        store_floats<kE>(mine + lane * kE, st.o[rr]);
        if (lane == 0) {
            mine[D] = st.m[rr];
            mine[D + 1] = l_sum;
        }
    }
    __syncthreads();
    for (int rr = warp; rr < kRows; rr += kWarps) {
        float m_max = -INFINITY;
        for (int w = 0; w < kWarps; ++w) m_max = fmaxf(m_max, red[(w * kRowsPerPass + rr) * kStride + D]);
        float l_sum = 0.0f;
        float o[kE] = {};
        for (int w = 0; w < kWarps; ++w) {  // a warp that saw no key of the row has m = -inf: weight 0
            const float* part = red + (w * kRowsPerPass + rr) * kStride;
            const float weight = expf(part[D] - m_max);
            l_sum = fmaf(part[D + 1], weight, l_sum);
            float o_part[kE];
            load_floats<kE>(part + lane * kE, o_part);
#pragma unroll
            for (int e = 0; e < kE; ++e) o[e] = fmaf(o_part[e], weight, o[e]);
        }
        const std::int64_t slot = rows[rr].partial;
        if (lane == 0) p.plan.partial_ml[slot] = make_float2(m_max, l_sum);
        store_floats<kE>(p.plan.partial_o + slot * D + lane * kE, o);
    }
    __syncthreads();  // the stages are free for the next pass
}

// attend_pass for n (1..kRowsPerPass) rows, with n as a compile-time count.
template <typename T, int D, int kRows = kRowsPerPass>
__device__ __forceinline__ void attend_rows(const AttendParams<T>& p, const Item& it,
                                            const RowRef* rows, int n, T* stages, float* qs,
                                            int lane, int warp) {
    if constexpr (kRows > 1) {
        if (n < kRows) {
            attend_rows<T, D, kRows - 1>(p, it, rows, n, stages, qs, lane, warp);
            return;
        }
    }
    attend_pass<T, D, kRows>(p, it, rows, stages, qs, lane, warp);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 3) attend_items(AttendParams<T> p) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ RowRef rows[kThreads];
    __shared__ int scratch[kWarps];
    __shared__ __align__(16) float qs[kRowsPerPass * D];
    const Batch& b = p.batch;
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid % kWarp;
    const int warp = tid / kWarp;
    const std::int64_t items = p.plan.item_prefix[b.batch * b.heads_kv];
    for (std::int64_t index = blockIdx.x; index < items; index += gridDim.x) {
        const Item it = locate(p, index);
        if (it.k0 >= it.k1) continue;
        const Request req = request(b, it.r);
        // Tokens before t_first are before the chunk's first key: not interested.
        const int t_first = max(0, it.k0 - req.first_pos);
        const std::int64_t end = static_cast<std::int64_t>(req.q_len) * b.group;
        for (std::int64_t window = static_cast<std::int64_t>(t_first) * b.group; window < end;
             window += kThreads) {
            const std::int64_t candidate = window + tid;  // (token, head of the group), token-major
            RowRef ref{0, 0, 0, 0};
            bool take = false;
            if (candidate < end) {
                const int t = static_cast<int>(candidate / b.group);
                ref.head = it.g * b.group + static_cast<int>(candidate % b.group);
                ref.row = req.q_start + t;
                ref.pos = req.first_pos + t;
                if (p.plan.dense) {
                    take = true;
                    ref.partial = dense_partial(b, p.plan, req, t, ref.head, it.unit);
                } else {
                    const std::int32_t* row_sel = p.plan.sel + (ref.row * b.heads_q + ref.head) * b.slots;
                    for (int s = 0; s < b.slots && !take; ++s) {
                        if (row_sel[s] == it.unit) {
                            take = true;
                            ref.partial = moba_partial(b, p.plan, ref.row, ref.head, s, it.chunk);
                        }
                    }
                }
            }
            __syncthreads();  // the previous window's passes are done with rows[]
            int n_rows = 0;
            const int at = block_exclusive_scan<kThreads>(take ? 1 : 0, scratch, &n_rows);
            if (take) rows[at] = ref;
            __syncthreads();
            for (int first = 0; first < n_rows; first += kRowsPerPass)
                attend_rows<T, D>(p, it, rows + first, min(kRowsPerPass, n_rows - first),
                                  reinterpret_cast<T*>(smem), qs, lane, warp);
        }
    }
}

}  // namespace

void launch_attention(const DecodeArgs& args, const Plan& plan, std::int64_t max_items) {
    dispatch_tensor_core(args.cache, [&](auto tag, auto dim) {
        using T = decltype(tag);
        constexpr int D = decltype(dim)::value;
        constexpr std::size_t smem = smem_bytes<D, T>();
        const auto kernel = attend_items<T, D>;
        MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
        int device = 0;
        int sms = 0;
        int per_sm = 0;
        MOBA_CUDA_CALL(cudaGetDevice(&device));
        MOBA_CUDA_CALL(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        MOBA_CUDA_CALL(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
        const std::int64_t resident = static_cast<std::int64_t>(sms) * std::max(per_sm, 1);
        const AttendParams<T> p{make_batch(args), plan, make_key_rows(args),
                                static_cast<const T*>(args.q), static_cast<const T*>(args.k),
                                static_cast<const T*>(args.v)};
        kernel<<<grid_for(std::min(resident, max_items), 1), kThreads, smem, args.stream>>>(p);
        MOBA_CHECK_LAUNCH();
    });
}

}  // namespace moba::split_decode::detail
