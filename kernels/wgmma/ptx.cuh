// Thin wrappers over the Hopper (sm_90a) PTX the wgmma kernels are built from: mbarriers,
// TMA tensor loads, cp.async gathers, warpgroup register reallocation (setmaxnreg), and the
// warpgroup MMA (wgmma.mma_async) with its fence / commit / wait; the shared-memory matrix descriptors
// are descriptor.hpp's (host and device).
// Nothing here knows about attention; tile.cuh puts these together into the kernel's layouts.
#pragma once

#include <cstdint>

#include <cuda.h>  // CUtensorMap (a 128-byte opaque struct; no driver library is linked)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/wgmma/descriptor.hpp"

namespace moba::wgmma::detail {

__device__ __forceinline__ std::uint32_t smem_u32(const void* pointer) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// ---- mbarriers (64-bit shared-memory objects; phases counted by the caller) ----

__device__ __forceinline__ void mbar_init(std::uint64_t* bar, std::uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(arrivals)
                 : "memory");
}
// Makes the initialised barriers visible to the async proxy (TMA completes on them) before the
// CTA-wide barrier that follows the initialisation.
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// One arrival that also announces `bytes` of TMA traffic the phase must wait for.
__device__ __forceinline__ void mbar_arrive_expect_tx(std::uint64_t* bar, std::uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(std::uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
// Blocks until the phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(std::uint64_t* bar, std::uint32_t parity) {
    const std::uint32_t address = smem_u32(bar);
    std::uint32_t done = 0;
    do {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(address), "r"(parity)
            : "memory");
    } while (done == 0);
}

// ---- TMA ----

// One box of a rank-3 tensor map (coordinates innermost first) into shared memory; completes
// its bytes on `bar`. The box lands in the map's swizzle layout.
__device__ __forceinline__ void tma_load_3d(void* smem_dst, const CUtensorMap* map, std::uint64_t* bar,
                                            int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(smem_dst)),
        "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
        : "memory");
}
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}

// ---- cp.async (per-thread 16-byte copies: gathers that TMA's boxes cannot express) ----

// 16 bytes global -> shared; valid == false reads nothing and writes zeros.
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* global_src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)),
                 "l"(global_src), "r"(valid ? 16 : 0)
                 : "memory");
}
// 8 bytes global -> shared (.ca: an 8-byte copy cannot bypass L1); valid == false writes zeros.
__device__ __forceinline__ void cp_async8(void* smem_dst, const void* global_src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_u32(smem_dst)),
                 "l"(global_src), "r"(valid ? 8 : 0)
                 : "memory");
}
// Waits for all of this thread's cp.async copies.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Closes this thread's current group of cp.async copies; cp_async_wait_group<N> waits until at
// most N of its groups are still in flight (the newest ones).
__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kN>
__device__ __forceinline__ void cp_async_wait_group() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kN) : "memory");
}
// Orders this thread's generic-proxy shared-memory writes (st.shared, completed cp.async)
// before later async-proxy reads of them (wgmma descriptors, TMA stores).
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Stores four 8 x 8 b16 matrices transposed: register r[m] holds this thread's pair of matrix
// m in the mma fragment layout (row lane / 4, columns 2 (lane % 4) + [0, 2)); lane 8 m + t
// gives the 16-byte shared address where column t of matrix m goes.
__device__ __forceinline__ void stmatrix_x4_trans(std::uint32_t address, const std::uint32_t (&r)[4]) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(address),
                 "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
}
// One 16-byte shared store of four floats.
__device__ __forceinline__ void st_shared_v4(std::uint32_t address, float a, float b, float c, float d) {
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "f"(a), "f"(b), "f"(c), "f"(d)
                 : "memory");
}
// One 8-byte shared store of two floats.
__device__ __forceinline__ void st_shared_v2(std::uint32_t address, float a, float b) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(address), "f"(a), "f"(b) : "memory");
}
// One 8-byte shared store / load of a signed 64-bit integer.
__device__ __forceinline__ void st_shared_s64(std::uint32_t address, std::int64_t v) {
    asm volatile("st.shared.s64 [%0], %1;\n" ::"r"(address), "l"(v) : "memory");
}
__device__ __forceinline__ std::int64_t ld_shared_s64(std::uint32_t address) {
    std::int64_t v;
    asm volatile("ld.shared.s64 %0, [%1];\n" : "=l"(v) : "r"(address) : "memory");
    return v;
}
// One 16-byte shared load of four floats.
__device__ __forceinline__ float4 ld_shared_v4(std::uint32_t address) {
    float4 v;
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(address)
                 : "memory");
    return v;
}
// global[dst .. dst + 4) += v as fp32: one vector reduction (sm_90), no value returned.
__device__ __forceinline__ void red_add_v4(float* dst, float4 v) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(dst), "f"(v.x), "f"(v.y), "f"(v.z),
                 "f"(v.w)
                 : "memory");
}
// global[dst .. dst + bytes) += shared[src ..) as fp32, by the bulk copy engine (asynchronous;
// one bulk group per call). bytes a multiple of 16, both addresses 16-byte aligned.
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes) {
    asm volatile(
        "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
        "cp.async.bulk.commit_group;\n" ::"l"(dst),
        "r"(src), "r"(bytes)
        : "memory");
}
// Waits until this thread's bulk groups have read their shared memory (it may be rewritten).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
// Waits until this thread's bulk groups are complete.
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// Synchronises `threads` threads (whole warps) on hardware barrier `id` (0 is __syncthreads').
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- warpgroup register reallocation: the producer gives registers to the consumers ----

template <int kRegs>
__device__ __forceinline__ void warpgroup_reg_dealloc() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void warpgroup_reg_alloc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// ---- wgmma ----

// Orders this thread's earlier register (and shared-memory) writes before the next wgmma
// reads them: required before the first wgmma of a batch whenever the accumulators or the
// register A operand were touched by ordinary instructions.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Pins an accumulator register at this point of the program: the compiler may not move reads
// or writes of it across (the registers of an in-flight wgmma must not be touched).
template <int kN>
__device__ __forceinline__ void fence_operands(float (&r)[kN]) {
#pragma unroll
    for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for register A fragments, which an in-flight wgmma still reads: fenced after its
// wait, they stay live (and unmoved) until then.
template <int kSteps>
__device__ __forceinline__ void fence_operands(std::uint32_t (&a)[kSteps][4]) {
#pragma unroll
    for (int j = 0; j < kSteps; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[j][i])::"memory");
}

// The wgmma shared-memory matrix descriptors: descriptor.hpp (host and device, tested on the CPU).

// The operand lists of the accumulators: "+f"(d[0]) ... "+f"(d[n - 1]).
#define MOBA_WG_ACC8(d, i)                                                                       \
    "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]),     \
        "+f"(d[(i) + 5]), "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define MOBA_WG_ACC32(d) MOBA_WG_ACC8(d, 0), MOBA_WG_ACC8(d, 8), MOBA_WG_ACC8(d, 16), MOBA_WG_ACC8(d, 24)
#define MOBA_WG_ACC64(d) MOBA_WG_ACC32(d), MOBA_WG_ACC8(d, 32), MOBA_WG_ACC8(d, 40), MOBA_WG_ACC8(d, 48), MOBA_WG_ACC8(d, 56)
#define MOBA_WG_REGS32                                                                          \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define MOBA_WG_REGS64                                                                          \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}"

// D(64 x N, fp32) (+)= A(64 x 16) B(16 x N) for one warpgroup.
//   ss: A and B from shared memory (descriptors), both K-major; scale_d = 0 overwrites D.
//   rs: A from registers (4 x 32-bit per thread, the mma.m16n8k16 A layout per warp), B from
//       shared memory MN-major (transpose bit set); always accumulates.
// Accumulator layout (per warp w of the warpgroup, g = lane / 4, t = lane % 4):
//   d[4 i + 2 r + c] = D(16 w + g + 8 r, 8 i + 2 t + c).
template <typename T, int kN>
struct Wgmma;

#define MOBA_WG_DEFINE(TYPE, NAME)                                                                \
    template <>                                                                                   \
    struct Wgmma<TYPE, 64> {                                                                      \
        __device__ __forceinline__ static void ss(float (&d)[32], std::uint64_t a, std::uint64_t b, \
                                                  int scale_d) {                                  \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                      \
                "wgmma.mma_async.sync.aligned.m64n64k16.f32." NAME "." NAME " " MOBA_WG_REGS32    \
                ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                                 \
                : MOBA_WG_ACC32(d)                                                                \
                : "l"(a), "l"(b), "r"(scale_d));                                                  \
        }                                                                                         \
        /* B read MN-major (transposed): the fused dQ's K operand. */                            \
        __device__ __forceinline__ static void ss_b_mn(float (&d)[32], std::uint64_t a, std::uint64_t b, \
                                                       int scale_d) {                             \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                      \
                "wgmma.mma_async.sync.aligned.m64n64k16.f32." NAME "." NAME " " MOBA_WG_REGS32    \
                ", %32, %33, p, 1, 1, 0, 1;\n}\n"                                                 \
                : MOBA_WG_ACC32(d)                                                                \
                : "l"(a), "l"(b), "r"(scale_d));                                                  \
        }                                                                                         \
        __device__ __forceinline__ static void rs(float (&d)[32], const std::uint32_t (&a)[4],    \
                                                  std::uint64_t b) {                              \
            asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." NAME "." NAME " "          \
                         MOBA_WG_REGS32 ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"              \
                         : MOBA_WG_ACC32(d)                                                       \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));                   \
        }                                                                                         \
    };                                                                                            \
    template <>                                                                                   \
    struct Wgmma<TYPE, 128> {                                                                     \
        __device__ __forceinline__ static void ss(float (&d)[64], std::uint64_t a, std::uint64_t b, \
                                                  int scale_d) {                                  \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                      \
                "wgmma.mma_async.sync.aligned.m64n128k16.f32." NAME "." NAME " " MOBA_WG_REGS64   \
                ", %64, %65, p, 1, 1, 0, 0;\n}\n"                                                 \
                : MOBA_WG_ACC64(d)                                                                \
                : "l"(a), "l"(b), "r"(scale_d));                                                  \
        }                                                                                         \
        __device__ __forceinline__ static void rs(float (&d)[64], const std::uint32_t (&a)[4],    \
                                                  std::uint64_t b) {                              \
            asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." NAME "." NAME " "         \
                         MOBA_WG_REGS64 ", {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"              \
                         : MOBA_WG_ACC64(d)                                                       \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));                   \
        }                                                                                         \
    };

MOBA_WG_DEFINE(__nv_bfloat16, "bf16")
MOBA_WG_DEFINE(__half, "f16")

#undef MOBA_WG_DEFINE
#undef MOBA_WG_REGS64
#undef MOBA_WG_REGS32
#undef MOBA_WG_ACC64
#undef MOBA_WG_ACC32
#undef MOBA_WG_ACC8

// Two fp32 values rounded into one 32-bit register of the dtype (low half = first value).
template <typename T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ std::uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
}
template <>
__device__ __forceinline__ std::uint32_t pack2<__half>(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&v);
}

// 2^x on the special-function unit (-inf -> +0).
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

}  // namespace moba::wgmma::detail
