// Layout probes of probe.hpp: the same device functions as causal_kernel.cuh and wave_kernel.cuh
// (load_tile, gather_tile, qk_gemm, p_fragments, pv_gemm, acc_row/acc_col) with nothing around
// them.
#include "kernels/wgmma/probe.hpp"

#include <cstdint>
#include <stdexcept>

#include "core/cuda_check.hpp"
#include "core/dispatch.hpp"
#include "kernels/wgmma/tensor_map.hpp"
#include "kernels/wgmma/tile.cuh"

namespace moba::wgmma::probe {
namespace {

using namespace detail;

constexpr int kThreads = 256;  // two consumer warpgroups, 64 rows each, as in the kernel

// Tiles at 0 and kQBytes, the barrier after them: every tile 1024-byte aligned as in the kernel.
template <int kD>
constexpr int probe_smem_bytes() {
    return static_cast<int>(TileShape<kD>::kQBytes + TileShape<kD>::kKVBytes + 8 + 1024);
}

// Thread 0 loads one 128-row tile per map into the two tile slots and everyone waits.
template <int kD>
__device__ void load_tiles(unsigned char* smem, const CUtensorMap* first, const CUtensorMap* second) {
    using S = TileShape<kD>;
    auto* bar = reinterpret_cast<std::uint64_t*>(smem + S::kQBytes + S::kKVBytes);
    if (threadIdx.x == 0) {
        mbar_init(bar, 1);
        mbar_init_fence();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        mbar_arrive_expect_tx(bar, (first != nullptr ? S::kQBytes : 0) + S::kKVBytes);
        if (first != nullptr) load_tile<kD, S::kBlockM>(smem, first, bar, 0, 0);
        load_tile<kD, S::kBlockN>(smem + S::kQBytes, second, bar, 0, 0);
    }
    mbar_wait(bar, 0);
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads)
    qk_kernel(const __grid_constant__ CUtensorMap q_map, const __grid_constant__ CUtensorMap k_map, float* s_out) {
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    load_tiles<kD>(smem, &q_map, &k_map);
    const int row0 = 64 * (threadIdx.x / 128);
    float s[64];
    qk_gemm<T, kD>(s, smem, row0, smem + TileShape<kD>::kQBytes);
    for_each_acc([&](int i, int r, int c) {
        s_out[(row0 + acc_row(r)) * kRows + acc_col(i, c)] = s[4 * i + 2 * r + c];
    });
}

// The wave kernel gathers with 96 threads; use as many here so the copy loop's stride is the same.
constexpr int kGatherThreads = 96;

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads)
    gathered_qk_kernel(const __grid_constant__ CUtensorMap k_map, const void* q_source, const int* rows,
                       float* s_out) {
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    load_tiles<kD>(smem, nullptr, &k_map);
    if (threadIdx.x < kGatherThreads)
        gather_tile<kD, kRows>(smem, q_source, threadIdx.x, kGatherThreads, [&](int r) {
            return rows[r] >= 0 ? static_cast<std::int64_t>(rows[r]) * kD : std::int64_t{-1};
        });
    __syncthreads();  // the gatherers have waited for and fenced their copies
    const int row0 = 64 * (threadIdx.x / 128);
    float s[64];
    qk_gemm<T, kD>(s, smem, row0, smem + TileShape<kD>::kQBytes);
    for_each_acc([&](int i, int r, int c) {
        s_out[(row0 + acc_row(r)) * kRows + acc_col(i, c)] = s[4 * i + 2 * r + c];
    });
}

template <typename T, int kD>
__global__ void __launch_bounds__(kThreads)
    pv_kernel(const __grid_constant__ CUtensorMap v_map, const float* p_in, float* o_out) {
    extern __shared__ unsigned char smem_raw[];
    unsigned char* smem = aligned_smem(smem_raw);
    load_tiles<kD>(smem, nullptr, &v_map);
    const int row0 = 64 * (threadIdx.x / 128);
    float p[64];  // P in the S accumulator layout, as the kernel's softmax leaves it
    for_each_acc([&](int i, int r, int c) {
        p[4 * i + 2 * r + c] = p_in[(row0 + acc_row(r)) * kRows + acc_col(i, c)];
    });
    std::uint32_t a[8][4];
    p_fragments<T>(a, p);
    float o[kD / 2];
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) o[i] = 0.0f;
    pv_gemm<T, kD>(o, a, smem + TileShape<kD>::kQBytes);
#pragma unroll
    for (int i = 0; i < kD / 8; ++i)
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int c = 0; c < 2; ++c)
                o_out[(row0 + acc_row(r)) * kD + acc_col(i, c)] = o[4 * i + 2 * r + c];
}

// Device memory freed on scope exit (errors while freeing are ignored: nothing to report to).
struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(std::size_t bytes) { MOBA_CUDA_CALL(cudaMalloc(&ptr, bytes)); }
    ~DeviceBuffer() { (void)cudaFree(ptr); }
    DeviceBuffer(DeviceBuffer&& other) noexcept : ptr(other.ptr) { other.ptr = nullptr; }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(DeviceBuffer&&) = delete;
};

template <typename T>
DeviceBuffer upload_as(const std::vector<float>& values) {
    std::vector<T> host(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) host[i] = T(values[i]);
    DeviceBuffer buffer(host.size() * sizeof(T));
    MOBA_CUDA_CALL(cudaMemcpy(buffer.ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return buffer;
}

DeviceBuffer upload_f32(const std::vector<float>& values) {
    DeviceBuffer buffer(values.size() * sizeof(float));
    MOBA_CUDA_CALL(cudaMemcpy(buffer.ptr, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
    return buffer;
}

std::vector<float> download_f32(const DeviceBuffer& buffer, std::size_t count) {
    std::vector<float> host(count);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    MOBA_CUDA_CALL(cudaMemcpy(host.data(), buffer.ptr, count * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
}

void check_sizes(int head_dim, std::size_t a, std::size_t a_expected, std::size_t b, std::size_t b_expected) {
    if (head_dim != 64 && head_dim != 128) throw std::invalid_argument("probe: head dim 64 or 128");
    if (a != a_expected || b != b_expected) throw std::invalid_argument("probe: wrong input sizes");
}

template <typename T, int kD>
std::vector<float> run_qk(const std::vector<float>& q, const std::vector<float>& k) {
    const DeviceBuffer dq = upload_as<T>(q);
    const DeviceBuffer dk = upload_as<T>(k);
    const DeviceBuffer ds(sizeof(float) * kRows * kRows);
    const CUtensorMap q_map = make_tile_map(dq.ptr, kRows, 1, kD, kRows);
    const CUtensorMap k_map = make_tile_map(dk.ptr, kRows, 1, kD, kRows);
    const auto kernel = qk_kernel<T, kD>;
    constexpr int kSmem = probe_smem_bytes<kD>();
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    kernel<<<1, kThreads, kSmem>>>(q_map, k_map, static_cast<float*>(ds.ptr));
    MOBA_CHECK_LAUNCH();
    return download_f32(ds, static_cast<std::size_t>(kRows) * kRows);
}

template <typename T, int kD>
std::vector<float> run_gathered_qk(const std::vector<float>& q_source, const std::vector<int>& rows,
                                   const std::vector<float>& k) {
    const DeviceBuffer dq = upload_as<T>(q_source);
    const DeviceBuffer dk = upload_as<T>(k);
    const DeviceBuffer drows(rows.size() * sizeof(int));
    MOBA_CUDA_CALL(cudaMemcpy(drows.ptr, rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice));
    const DeviceBuffer ds(sizeof(float) * kRows * kRows);
    const CUtensorMap k_map = make_tile_map(dk.ptr, kRows, 1, kD, kRows);
    const auto kernel = gathered_qk_kernel<T, kD>;
    constexpr int kSmem = probe_smem_bytes<kD>();
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    kernel<<<1, kThreads, kSmem>>>(k_map, dq.ptr, static_cast<const int*>(drows.ptr), static_cast<float*>(ds.ptr));
    MOBA_CHECK_LAUNCH();
    return download_f32(ds, static_cast<std::size_t>(kRows) * kRows);
}

template <typename T, int kD>
std::vector<float> run_pv(const std::vector<float>& p, const std::vector<float>& v) {
    const DeviceBuffer dp = upload_f32(p);
    const DeviceBuffer dv = upload_as<T>(v);
    const DeviceBuffer d_o(sizeof(float) * kRows * kD);
    const CUtensorMap v_map = make_tile_map(dv.ptr, kRows, 1, kD, kRows);
    const auto kernel = pv_kernel<T, kD>;
    constexpr int kSmem = probe_smem_bytes<kD>();
    MOBA_CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    kernel<<<1, kThreads, kSmem>>>(v_map, static_cast<const float*>(dp.ptr), static_cast<float*>(d_o.ptr));
    MOBA_CHECK_LAUNCH();
    return download_f32(d_o, static_cast<std::size_t>(kRows) * kD);
}

template <template <typename, int> class Fn, typename... Args>
std::vector<float> dispatch(DType dtype, int head_dim, const Args&... args) {
    std::vector<float> result;
    ::moba::dispatch(TensorCoreDTypes{}, TensorCoreHeadDims{}, dtype, head_dim, [&](auto tag, auto dim) {
        result = Fn<decltype(tag), decltype(dim)::value>::run(args...);
    });
    return result;
}

template <typename T, int kD>
struct Qk {
    static std::vector<float> run(const std::vector<float>& q, const std::vector<float>& k) {
        return run_qk<T, kD>(q, k);
    }
};
template <typename T, int kD>
struct GatheredQk {
    static std::vector<float> run(const std::vector<float>& q_source, const std::vector<int>& rows,
                                  const std::vector<float>& k) {
        return run_gathered_qk<T, kD>(q_source, rows, k);
    }
};
template <typename T, int kD>
struct Pv {
    static std::vector<float> run(const std::vector<float>& p, const std::vector<float>& v) {
        return run_pv<T, kD>(p, v);
    }
};

}  // namespace

std::vector<float> qk(DType dtype, int head_dim, const std::vector<float>& q, const std::vector<float>& k) {
    const auto n = static_cast<std::size_t>(kRows) * static_cast<std::size_t>(head_dim);
    check_sizes(head_dim, q.size(), n, k.size(), n);
    return dispatch<Qk>(dtype, head_dim, q, k);
}

std::vector<float> gathered_qk(DType dtype, int head_dim, const std::vector<float>& q_source,
                               const std::vector<int>& rows, const std::vector<float>& k) {
    const auto d = static_cast<std::size_t>(head_dim);
    check_sizes(head_dim, rows.size(), static_cast<std::size_t>(kRows), k.size(), kRows * d);
    const auto n = static_cast<int>(q_source.size() / d);
    if (q_source.size() % d != 0) throw std::invalid_argument("probe: q_source is not [n, head_dim]");
    for (const int r : rows)
        if (r >= n) throw std::invalid_argument("probe: row index past q_source");
    return dispatch<GatheredQk>(dtype, head_dim, q_source, rows, k);
}

std::vector<float> pv(DType dtype, int head_dim, const std::vector<float>& p, const std::vector<float>& v) {
    check_sizes(head_dim, p.size(), static_cast<std::size_t>(kRows) * kRows, v.size(),
                static_cast<std::size_t>(kRows) * static_cast<std::size_t>(head_dim));
    return dispatch<Pv>(dtype, head_dim, p, v);
}

}  // namespace moba::wgmma::probe
