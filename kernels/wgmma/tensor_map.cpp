// cuTensorMapEncodeTiled is a driver API call; it is fetched through the runtime's
// cudaGetDriverEntryPointByVersion so the library needs no link against libcuda.
#include "kernels/wgmma/tensor_map.hpp"

#include <stdexcept>
#include <string>

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000
#include <cuda_runtime_api.h>

#include "core/cuda_check.hpp"

namespace moba::wgmma::detail {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_function() {
    // Looked up once; the pointer stays valid for the life of the process.
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* pointer = nullptr;
        cudaDriverEntryPointQueryResult query{};
        MOBA_CUDA_CALL(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                                        cudaEnableDefault, &query));
        if (query != cudaDriverEntryPointSuccess || pointer == nullptr)
            throw std::runtime_error("wgmma_dense: the driver has no cuTensorMapEncodeTiled (needs CUDA 12+)");
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(pointer);
    }();
    return fn;
}

}  // namespace

CUtensorMap make_tile_map(const void* base, std::int64_t tokens, int heads, int head_dim, int box_rows) {
    CUtensorMap map{};
    constexpr cuuint64_t kElemBytes = 2;
    // Innermost first: D (contiguous), head, token.
    const cuuint64_t dims[3] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(heads),
                                static_cast<cuuint64_t>(tokens)};
    // Byte strides of dims 1 and 2 (dim 0 is contiguous).
    const cuuint64_t strides[2] = {static_cast<cuuint64_t>(head_dim) * kElemBytes,
                                   static_cast<cuuint64_t>(heads) * static_cast<cuuint64_t>(head_dim) * kElemBytes};
    // 64 elements = 128 bytes: the widest box the 128-byte swizzle allows.
    const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(box_rows)};
    const cuuint32_t element_strides[3] = {1, 1, 1};
    const CUresult status = encode_function()(
        &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box,
        element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (status != CUDA_SUCCESS)
        throw std::runtime_error("wgmma_dense: cuTensorMapEncodeTiled failed with CUresult " +
                                 std::to_string(static_cast<int>(status)) + " (tokens " +
                                 std::to_string(tokens) + ", heads " + std::to_string(heads) +
                                 ", head dim " + std::to_string(head_dim) + ")");
    return map;
}

}  // namespace moba::wgmma::detail
