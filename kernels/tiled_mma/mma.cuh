// Warp-level tensor-core primitives of the tiled_mma attention kernels (sm_80+ instructions,
// run here on sm_90a): asynchronous 16-byte copies into shared memory, ldmatrix, and the
// m16n8k16 MMA with fp32 accumulation, for bf16 and fp16 operands.
//
// Fragment layouts (PTX ISA, mma.m16n8k16; g = lane / 4, t = lane % 4):
//   A 16x16 (row-major):  a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B 16x8  (k x n):      b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
//   C 16x8  (fp32):       c0 c1 (g, 2t..2t+1)  c2 c3 (g+8, 2t..2t+1)
// Shared-memory tiles are rows of D elements cut into 16-byte chunks; chunk c of row r is
// stored at chunk c ^ (r & 7), so the 8 row addresses of one ldmatrix matrix fall in 8
// different bank groups (no conflicts) for D = 64 and 128.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace moba::tiled_mma::detail {

// Element offset of (row, 16-byte chunk) in a swizzled tile of kD-element rows.
template <int kD>
__device__ __forceinline__ int swizzled(int row, int chunk) {
    return row * kD + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ std::uint32_t smem_address(const void* pointer) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global -> shared copy; valid == false writes zeros and reads nothing.
__device__ __forceinline__ void copy16(void* smem, const void* global, bool valid) {
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)),
                 "l"(global), "r"(bytes));
}
// Hint: bring the 128-byte line holding `global` into L2.
__device__ __forceinline__ void prefetch_l2(const void* global) {
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(global));
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void wait_copies() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(smem)));
}

// 2^x on the special-function unit (ex2.approx: about 2 ulp, -inf -> +0), without the range
// handling exp2f adds outside fast-math builds.
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

template <typename T>
struct MmaOp;

template <>
struct MmaOp<__nv_bfloat16> {
    __device__ __forceinline__ static void run(float (&c)[4], const std::uint32_t (&a)[4],
                                               std::uint32_t b0, std::uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    __device__ __forceinline__ static std::uint32_t pack(float lo, float hi) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<const std::uint32_t*>(&v);
    }
};

template <>
struct MmaOp<__half> {
    __device__ __forceinline__ static void run(float (&c)[4], const std::uint32_t (&a)[4],
                                               std::uint32_t b0, std::uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    __device__ __forceinline__ static std::uint32_t pack(float lo, float hi) {
        const __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<const std::uint32_t*>(&v);
    }
};

// Two values of a row of a C fragment written as one 4- or 8-byte store.
template <typename T>
__device__ __forceinline__ void store_pair(T* dst, float lo, float hi) {
    *reinterpret_cast<std::uint32_t*>(dst) = MmaOp<T>::pack(lo, hi);
}
__device__ __forceinline__ void store_pair(float* dst, float lo, float hi) {
    *reinterpret_cast<float2*>(dst) = make_float2(lo, hi);
}

}  // namespace moba::tiled_mma::detail
