// The float64 GPU truth: see attention64.hpp for the method, SEMANTICS.md §3.1 for its place.
// Matrices are row-major here; cuBLAS is column-major, so a row-major [m, n] matrix with row
// stride ld is the column-major n x m matrix with leading dimension ld, and every product below
// is written transposed (C^T = B^T A^T).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/cuda_check.hpp"
#include "reference/gpu/attention64.hpp"
#include "reference/gpu/plan.hpp"

#define REF64_CUBLAS_CALL(call)                                                            \
    do {                                                                                   \
        const cublasStatus_t ref64_status_ = (call);                                       \
        if (ref64_status_ != CUBLAS_STATUS_SUCCESS)                                        \
            throw std::runtime_error(std::string(#call) + " failed at " + __FILE__ + ":" + \
                                     std::to_string(__LINE__) + ": cuBLAS status " +       \
                                     std::to_string(static_cast<int>(ref64_status_)));     \
    } while (0)

namespace moba::ref::gpu {
namespace {

constexpr int kThreads = 256;
// masked_softmax keeps one bit per union block in shared memory: at most 48 KiB.
constexpr int kMaxUnionBlocks = 48 * 1024 * 8;

// Device memory of n elements, freed on scope exit.
template <class T>
class DeviceArray {
public:
    explicit DeviceArray(std::int64_t n) : n_(n) {
        if (n > 0) MOBA_CUDA_CALL(cudaMalloc(&data_, static_cast<std::size_t>(n) * sizeof(T)));
    }
    ~DeviceArray() { cudaFree(data_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    T* get() const { return data_; }
    std::int64_t size() const { return n_; }

private:
    T* data_ = nullptr;
    std::int64_t n_ = 0;
};

class Stream {
public:
    Stream() { MOBA_CUDA_CALL(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
    ~Stream() { cudaStreamDestroy(s_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return s_; }

private:
    cudaStream_t s_ = nullptr;
};

class Blas {
public:
    explicit Blas(cudaStream_t stream) {
        REF64_CUBLAS_CALL(cublasCreate(&h_));
        REF64_CUBLAS_CALL(cublasSetStream(h_, stream));
        // Plain IEEE float64 (FP64 tensor cores are FMA-exact); emulation is never asked for.
        REF64_CUBLAS_CALL(cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH));
    }
    ~Blas() { cublasDestroy(h_); }
    Blas(const Blas&) = delete;
    Blas& operator=(const Blas&) = delete;
    // Column-major C[m, n] = alpha op(A) op(B).
    void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
              const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double* c,
              std::int64_t ldc) const {
        const double beta = 0.0;
        REF64_CUBLAS_CALL(cublasDgemm(
            h_, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(m),
            static_cast<int>(n), static_cast<int>(k), &alpha, a, static_cast<int>(lda), b,
            static_cast<int>(ldb), &beta, c, static_cast<int>(ldc)));
    }

private:
    cublasHandle_t h_ = nullptr;
};

unsigned blocks_for(std::int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void widen(const float* __restrict__ x, double* __restrict__ y, std::int64_t n) {
    const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i < n) y[i] = static_cast<double>(x[i]);
}

// One tile's view of the problem, by value.
struct TileArgs {
    std::int64_t start;  // first packed token of the sequence
    std::int64_t row0;   // first query row of the tile, local
    int rows;
    int head, head_kv, heads_q, heads_kv, dim, block, slots;
    std::int64_t keys;           // gathered keys (columns)
    const std::int32_t* blocks;  // [nblocks] the tile's union, ascending
    int nblocks;
};

// Local token of gathered column c (keys <= the workspace's 2^26 columns: 32-bit arithmetic).
__device__ std::int64_t key_of(const TileArgs& a, int c) {
    return std::int64_t{a.blocks[c / a.block]} * a.block + c % a.block;
}

// ku, vu [keys, D] = k, v of the union's tokens, kv head head_kv.
__global__ void gather_keys(TileArgs a, const double* __restrict__ k, const double* __restrict__ v,
                            double* __restrict__ ku, double* __restrict__ vu) {
    const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i >= a.keys * a.dim) return;
    const auto c = static_cast<int>(i / a.dim);
    const std::int64_t src =
        ((a.start + key_of(a, c)) * a.heads_kv + a.head_kv) * a.dim + i % a.dim;
    ku[i] = k[src];
    vu[i] = v[src];
}

// dk, dv [total, Hkv, D] += dku, dvu [keys, D] at the union's tokens (each token once per launch).
__global__ void scatter_add_keys(TileArgs a, const double* __restrict__ dku,
                                 const double* __restrict__ dvu, double* __restrict__ dk,
                                 double* __restrict__ dv) {
    const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i >= a.keys * a.dim) return;
    const auto c = static_cast<int>(i / a.dim);
    const std::int64_t dst =
        ((a.start + key_of(a, c)) * a.heads_kv + a.head_kv) * a.dim + i % a.dim;
    dk[dst] += dku[i];
    dv[dst] += dvu[i];
}

// Tree reduction of one value per thread over the block (kThreads, a power of two), fixed order.
template <bool kMax>
__device__ double block_reduce(double x, double* shared) {
    shared[threadIdx.x] = x;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            const double y = shared[threadIdx.x + half];
            shared[threadIdx.x] = kMax ? fmax(shared[threadIdx.x], y) : shared[threadIdx.x] + y;
        }
        __syncthreads();
    }
    const double r = shared[0];
    __syncthreads();
    return r;
}

// One block per query row of the tile. s [rows, keys]: scaled scores in, P out (0 where the
// key is not attended). sel: the selection [total, Hq, slots], or null for full causal
// attention. lse [Hq, total].
__global__ void __launch_bounds__(kThreads)
    masked_softmax(TileArgs a, double* __restrict__ s, const std::int32_t* __restrict__ sel,
                   std::int64_t total, double* __restrict__ lse) {
    extern __shared__ unsigned selected[];  // bit u: union block u is in the row's selection
    __shared__ double reduce[kThreads];
    const int r = blockIdx.x;
    const std::int64_t i = a.row0 + r;  // the query's local position
    const std::int64_t token = a.start + i;
    if (sel) {
        const int words = (a.nblocks + 31) / 32;
        for (int w = threadIdx.x; w < words; w += blockDim.x) selected[w] = 0u;
        __syncthreads();
        const std::int32_t* row = sel + (token * a.heads_q + a.head) * a.slots;
        for (int slot = threadIdx.x; slot < a.slots; slot += blockDim.x) {
            const std::int32_t b = row[slot];
            if (b < 0) continue;
            int lo = 0,
                hi = a.nblocks - 1;  // the union holds b (plan.cpp built it from these rows)
            while (lo < hi) {
                const int mid = (lo + hi) / 2;
                if (a.blocks[mid] < b)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (a.blocks[lo] != b) __trap();
            atomicOr(&selected[lo / 32], 1u << (lo % 32));
        }
        __syncthreads();
    }
    const auto keys = static_cast<int>(a.keys);
    auto attended = [&](int c) {
        const int u = c / a.block;
        if (sel && !((selected[u / 32] >> (u % 32)) & 1u)) return false;
        return key_of(a, c) <= i;
    };
    double* row_s = s + std::int64_t{r} * a.keys;
    double m = -HUGE_VAL;
    for (int c = threadIdx.x; c < keys; c += blockDim.x)
        if (attended(c)) m = fmax(m, row_s[c]);
    m = block_reduce<true>(m, reduce);
    double l = 0.0;
    for (int c = threadIdx.x; c < keys; c += blockDim.x)
        if (attended(c)) l += exp(row_s[c] - m);
    l = block_reduce<false>(l, reduce);
    for (int c = threadIdx.x; c < keys; c += blockDim.x)
        row_s[c] = attended(c) ? exp(row_s[c] - m) / l : 0.0;
    if (threadIdx.x == 0) lse[a.head * total + token] = m + log(l);
}

// delta[r] = dout . out of the tile's row r (rows of stride ld = Hq D).
__global__ void row_delta(TileArgs a, const double* __restrict__ dout,
                          const double* __restrict__ out, std::int64_t ld,
                          double* __restrict__ delta) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= a.rows) return;
    double sum = 0.0;
    for (int d = 0; d < a.dim; ++d) sum += dout[r * ld + d] * out[r * ld + d];
    delta[r] = sum;
}

// dp [rows, keys] -> dS = P (dP - delta) in place.
__global__ void score_grad(TileArgs a, const double* __restrict__ p, double* __restrict__ dp,
                           const double* __restrict__ delta) {
    const std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    if (i >= std::int64_t{a.rows} * a.keys) return;
    dp[i] = p[i] * (dp[i] - delta[i / a.keys]);
}

void check_sizes(const Problem& p, const HostInputs& in, bool backward) {
    auto check = [](const char* what, std::size_t got, std::int64_t want) {
        if (static_cast<std::int64_t>(got) != want)
            throw std::invalid_argument(std::string(what) + " has " + std::to_string(got) +
                                        " elements; the problem needs " + std::to_string(want));
    };
    p.validate();
    check("q", in.q.size(), p.q_elems());
    check("k", in.k.size(), p.kv_elems());
    check("v", in.v.size(), p.kv_elems());
    if (backward) check("dout", in.dout.size(), p.q_elems());
}

// One float tensor uploaded and widened to double.
void upload(const std::vector<float>& x, DeviceArray<float>& staging, double* y,
            cudaStream_t stream) {
    const auto n = static_cast<std::int64_t>(x.size());
    MOBA_CUDA_CALL(cudaMemcpyAsync(staging.get(), x.data(), x.size() * sizeof(float),
                                   cudaMemcpyHostToDevice, stream));
    widen<<<blocks_for(n), kThreads, 0, stream>>>(staging.get(), y, n);
    MOBA_CHECK_LAUNCH();
}

std::vector<double> download(const DeviceArray<double>& x, cudaStream_t stream) {
    std::vector<double> host(static_cast<std::size_t>(x.size()));
    MOBA_CUDA_CALL(cudaMemcpyAsync(host.data(), x.get(), host.size() * sizeof(double),
                                   cudaMemcpyDeviceToHost, stream));
    return host;
}

Result run(const Problem& p, const HostInputs& in, const Selection* sel, bool backward,
           std::int64_t workspace_elems = kWorkspaceElems) {
    check_sizes(p, in, backward);
    if (sel) check_selection(p, *sel);
    const Plan plan = plan_tiles(p, sel, workspace_elems);
    for (const Tile& t : plan.tiles)
        if (t.blocks > kMaxUnionBlocks)
            throw std::invalid_argument(
                "a tile's union of " + std::to_string(t.blocks) +
                " blocks is more than the float64 GPU truth's mask holds (" +
                std::to_string(kMaxUnionBlocks) + ")");
    const std::int64_t total = p.total_tokens();
    const int dim = p.head_dim;
    const std::int64_t ldq = std::int64_t{p.heads_q} * dim;  // row stride of q, dout, out, dq

    const double gib = 1024.0 * 1024.0 * 1024.0;
    const double need = device_bytes(p, plan, sel != nullptr, backward);
    std::size_t free_bytes = 0, total_bytes = 0;
    MOBA_CUDA_CALL(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (need > kMaxFreeMemoryShare * static_cast<double>(free_bytes))
        throw std::runtime_error("the float64 GPU truth needs " + std::to_string(need / gib) +
                                 " GiB of device memory; " + std::to_string(free_bytes / gib) +
                                 " GiB are free");

    Stream stream;
    const cudaStream_t st = stream.get();
    Blas blas(st);
    DeviceArray<double> q(p.q_elems()), k(p.kv_elems()), v(p.kv_elems());
    DeviceArray<double> dout(backward ? p.q_elems() : 0);
    {
        DeviceArray<float> staging(std::max(p.q_elems(), p.kv_elems()));
        upload(in.q, staging, q.get(), st);
        upload(in.k, staging, k.get(), st);
        upload(in.v, staging, v.get(), st);
        if (backward) upload(in.dout, staging, dout.get(), st);
        MOBA_CUDA_CALL(cudaStreamSynchronize(st));  // staging is freed here
    }
    DeviceArray<std::int32_t> sel_d(sel ? p.sel_elems() : 0);
    if (sel)
        MOBA_CUDA_CALL(cudaMemcpyAsync(sel_d.get(), sel->blocks.data(), sel->blocks.size() * 4,
                                       cudaMemcpyHostToDevice, st));
    DeviceArray<std::int32_t> blocks(static_cast<std::int64_t>(plan.blocks.size()));
    MOBA_CUDA_CALL(cudaMemcpyAsync(blocks.get(), plan.blocks.data(), plan.blocks.size() * 4,
                                   cudaMemcpyHostToDevice, st));
    DeviceArray<double> out(p.q_elems()), lse(p.lse_elems());
    DeviceArray<double> dq(backward ? p.q_elems() : 0), dk(backward ? p.kv_elems() : 0),
        dv(backward ? p.kv_elems() : 0);
    if (backward) {
        MOBA_CUDA_CALL(cudaMemsetAsync(dk.get(), 0, p.kv_elems() * sizeof(double), st));
        MOBA_CUDA_CALL(cudaMemsetAsync(dv.get(), 0, p.kv_elems() * sizeof(double), st));
    }
    DeviceArray<double> scores(plan.max_elems), dscores(backward ? plan.max_elems : 0);
    DeviceArray<double> ku(plan.max_keys * dim), vu(plan.max_keys * dim);
    DeviceArray<double> dku(backward ? plan.max_keys * dim : 0),
        dvu(backward ? plan.max_keys * dim : 0);
    DeviceArray<double> delta(backward ? plan.max_rows : 0);

    const std::vector<std::int32_t> cu = p.cu_seqlens();
    const double scale = p.scale();
    for (const Tile& t : plan.tiles) {
        const int nblocks_words = (t.blocks + 31) / 32;
        TileArgs a{cu[t.seq],
                   t.row0,
                   t.rows,
                   t.head,
                   t.head / p.group(),
                   p.heads_q,
                   p.heads_kv,
                   dim,
                   p.block,
                   p.sel_slots(),
                   t.keys,
                   blocks.get() + t.first_block,
                   t.blocks};
        const std::int64_t row_offset = ((a.start + t.row0) * p.heads_q + t.head) * dim;
        const std::int64_t kd = t.keys * dim;
        gather_keys<<<blocks_for(kd), kThreads, 0, st>>>(a, k.get(), v.get(), ku.get(), vu.get());
        MOBA_CHECK_LAUNCH();
        // S^T [keys, rows] = K_u Q^T, scaled.
        blas.gemm(true, false, t.keys, t.rows, dim, scale, ku.get(), dim, q.get() + row_offset, ldq,
                  scores.get(), t.keys);
        masked_softmax<<<t.rows, kThreads, (sel ? nblocks_words : 0) * 4, st>>>(
            a, scores.get(), sel ? sel_d.get() : nullptr, total, lse.get());
        MOBA_CHECK_LAUNCH();
        // out^T [D, rows] = V_u^T P^T, written in place in out [total, Hq, D].
        blas.gemm(false, false, dim, t.rows, t.keys, 1.0, vu.get(), dim, scores.get(), t.keys,
                  out.get() + row_offset, ldq);
        if (!backward) continue;
        row_delta<<<blocks_for(t.rows), kThreads, 0, st>>>(
            a, dout.get() + row_offset, out.get() + row_offset, ldq, delta.get());
        MOBA_CHECK_LAUNCH();
        // dP^T [keys, rows] = V_u dout^T.
        blas.gemm(true, false, t.keys, t.rows, dim, 1.0, vu.get(), dim, dout.get() + row_offset,
                  ldq, dscores.get(), t.keys);
        score_grad<<<blocks_for(std::int64_t{t.rows} * t.keys), kThreads, 0, st>>>(
            a, scores.get(), dscores.get(), delta.get());
        MOBA_CHECK_LAUNCH();
        // dq^T [D, rows] = scale K_u^T dS^T.
        blas.gemm(false, false, dim, t.rows, t.keys, scale, ku.get(), dim, dscores.get(), t.keys,
                  dq.get() + row_offset, ldq);
        // dK_u^T [D, keys] = scale Q^T dS;  dV_u^T [D, keys] = dout^T P.
        blas.gemm(false, true, dim, t.keys, t.rows, scale, q.get() + row_offset, ldq, dscores.get(),
                  t.keys, dku.get(), dim);
        blas.gemm(false, true, dim, t.keys, t.rows, 1.0, dout.get() + row_offset, ldq, scores.get(),
                  t.keys, dvu.get(), dim);
        scatter_add_keys<<<blocks_for(kd), kThreads, 0, st>>>(a, dku.get(), dvu.get(), dk.get(),
                                                              dv.get());
        MOBA_CHECK_LAUNCH();
    }
    Result result;
    result.forward.out = download(out, st);
    result.forward.lse = download(lse, st);
    if (backward) {
        result.gradients.dq = download(dq, st);
        result.gradients.dk = download(dk, st);
        result.gradients.dv = download(dv, st);
    }
    MOBA_CUDA_CALL(cudaStreamSynchronize(st));
    return result;
}

}  // namespace

Forward attention_forward(const Problem& problem, const HostInputs& inputs, const Selection& sel) {
    return run(problem, inputs, &sel, false).forward;
}
Gradients attention_backward(const Problem& problem, const HostInputs& inputs,
                             const Selection& sel) {
    return run(problem, inputs, &sel, true).gradients;
}
Result attention(const Problem& problem, const HostInputs& inputs, const Selection& sel,
                 std::int64_t workspace_elems) {
    return run(problem, inputs, &sel, true, workspace_elems);
}
Forward full_attention_forward(const Problem& problem, const HostInputs& inputs) {
    return run(problem, inputs, nullptr, false).forward;
}
Gradients full_attention_backward(const Problem& problem, const HostInputs& inputs) {
    return run(problem, inputs, nullptr, true).gradients;
}
Result full_attention(const Problem& problem, const HostInputs& inputs,
                      std::int64_t workspace_elems) {
    return run(problem, inputs, nullptr, true, workspace_elems);
}

}  // namespace moba::ref::gpu
