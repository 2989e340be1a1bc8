#include "harness/gpu_run.hpp"

#include <cstring>
#include <stdexcept>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "reference/parallel.hpp"

namespace moba {

std::vector<unsigned char> encode(DType dtype, std::span<const float> values) {
    std::vector<unsigned char> bytes(values.size() * dtype_bytes(dtype));
    // On every core: a decode study's 1M-token MHA cache is 4G values (seconds per pass on one).
    ref::parallel_for_ranges(static_cast<std::int64_t>(values.size()), [&](std::int64_t begin, std::int64_t end) {
        for (auto i = static_cast<std::size_t>(begin); i < static_cast<std::size_t>(end); ++i) {
            if (dtype == DType::f32) {
                std::memcpy(bytes.data() + 4 * i, &values[i], 4);
            } else {
                const unsigned short bits = dtype == DType::bf16
                                                ? __bfloat16_as_ushort(__float2bfloat16_rn(values[i]))
                                                : __half_as_ushort(__float2half_rn(values[i]));
                std::memcpy(bytes.data() + 2 * i, &bits, 2);
            }
        }
    });
    return bytes;
}

std::vector<float> decode(DType dtype, std::span<const unsigned char> bytes) {
    const std::size_t n = bytes.size() / dtype_bytes(dtype);
    std::vector<float> values(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (dtype == DType::f32) {
            std::memcpy(&values[i], bytes.data() + 4 * i, 4);
        } else {
            unsigned short bits;
            std::memcpy(&bits, bytes.data() + 2 * i, 2);
            values[i] = dtype == DType::bf16 ? __bfloat162float(__ushort_as_bfloat16(bits))
                                             : __half2float(__ushort_as_half(bits));
        }
    }
    return values;
}

namespace {

std::size_t tensor_bytes(const Problem& p, std::int64_t elems) {
    return static_cast<std::size_t>(elems) * dtype_bytes(p.dtype);
}

DeviceBuffer upload_tensor(const Problem& p, const std::vector<float>& values) {
    const auto bytes = encode(p.dtype, values);
    DeviceBuffer buf(bytes.size());
    buf.upload(bytes.data(), bytes.size());
    return buf;
}

std::vector<float> download_tensor(const Problem& p, const DeviceBuffer& buf) {
    std::vector<unsigned char> bytes(buf.bytes());
    buf.download(bytes.data(), bytes.size());
    return decode(p.dtype, bytes);
}

}  // namespace

std::size_t device_bytes_needed(const Implementation& impl, const Problem& p) {
    const std::size_t q = tensor_bytes(p, p.q_elems()), kv = tensor_bytes(p, p.kv_elems());
    std::size_t bytes = 0;
    bytes += 4 * (p.seqlens.size() + 1);            // cu_seqlens
    bytes += 2 * q + 2 * kv;                        // q, dout; k, v
    bytes += q + 4 * static_cast<std::size_t>(p.lse_elems());  // out, lse
    bytes += q + 2 * kv;                            // dq; dk, dv
    bytes += 4 * static_cast<std::size_t>(p.sel_elems());      // selection
    std::size_t workspace = 0;
    if (impl.gating_workspace_bytes) workspace = impl.gating_workspace_bytes(p);
    if (impl.attention_workspace_bytes)
        workspace = std::max(workspace, impl.attention_workspace_bytes(p));
    return bytes + workspace;
}

DeviceInputs::DeviceInputs(const Implementation& impl, const Problem& problem,
                           const HostInputs& inputs)
    : problem_(problem) {
    require_device_memory(device_bytes_needed(impl, problem),
                          fmt::format("{} on {}", impl.name, problem.flags()));
    const auto cu = problem.cu_seqlens();
    cu_seqlens = DeviceBuffer(cu.size() * sizeof(std::int32_t));
    cu_seqlens.upload(cu.data(), cu.size() * sizeof(std::int32_t));
    q = upload_tensor(problem, inputs.q);
    k = upload_tensor(problem, inputs.k);
    v = upload_tensor(problem, inputs.v);
    dout = upload_tensor(problem, inputs.dout);
}

Selection run_gating(const Implementation& impl, const DeviceInputs& in) {
    if (!impl.has_gating()) throw std::logic_error(impl.name + " has no gating");
    const Problem& p = in.problem();
    Selection sel;
    sel.slots = p.sel_slots();
    sel.blocks.resize(static_cast<std::size_t>(p.sel_elems()));
    DeviceBuffer d_sel(sel.blocks.size() * sizeof(std::int32_t));
    d_sel.poison();
    DeviceBuffer workspace(impl.gating_workspace_bytes ? impl.gating_workspace_bytes(p) : 0);
    GatingArgs args{p, in.cu_seqlens.as<std::int32_t>(), in.q.get(), in.k.get(),
                    d_sel.as<std::int32_t>(), workspace.get(), nullptr};
    impl.gating(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    d_sel.download(sel.blocks.data(), d_sel.bytes());
    return sel;
}

AttentionArgs forward_args(const Problem& problem, const DeviceBuffer& cu_seqlens, const DeviceBuffer& q,
                           const DeviceBuffer& k, const DeviceBuffer& v, const std::int32_t* sel,
                           const DeviceBuffer& out, const DeviceBuffer& lse, const DeviceBuffer& workspace) {
    AttentionArgs args{};
    args.problem = problem;
    args.cu_seqlens = cu_seqlens.as<std::int32_t>();
    args.q = q.get();
    args.k = k.get();
    args.v = v.get();
    args.sel = sel;
    args.out = out.get();
    args.lse = lse.as<float>();
    args.workspace = workspace.get();
    args.stream = nullptr;
    return args;
}

AttentionRun run_attention(const Implementation& impl, const DeviceInputs& in,
                           const Selection& selection, bool with_backward) {
    const Problem& p = in.problem();
    if (selection.slots != p.sel_slots() ||
        selection.blocks.size() != static_cast<std::size_t>(p.sel_elems()))
        throw std::invalid_argument("selection shape does not match the problem");
    DeviceBuffer d_sel(selection.blocks.size() * sizeof(std::int32_t));
    d_sel.upload(selection.blocks.data(), d_sel.bytes());
    DeviceBuffer out(tensor_bytes(p, p.q_elems()));
    DeviceBuffer lse(4 * static_cast<std::size_t>(p.lse_elems()));
    DeviceBuffer workspace(impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0);
    out.poison();
    lse.poison();
    AttentionArgs args = forward_args(p, in.cu_seqlens, in.q, in.k, in.v, d_sel.as<std::int32_t>(), out, lse, workspace);
    impl.forward(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());

    AttentionRun run;
    run.forward.out = download_tensor(p, out);
    run.forward.lse.resize(static_cast<std::size_t>(p.lse_elems()));
    lse.download(run.forward.lse.data(), lse.bytes());
    if (!with_backward || !impl.has_backward()) return run;

    DeviceBuffer dq(tensor_bytes(p, p.q_elems())), dk(tensor_bytes(p, p.kv_elems())),
        dv(tensor_bytes(p, p.kv_elems()));
    dq.poison();
    dk.poison();
    dv.poison();
    args.dout = in.dout.get();
    args.dq = dq.get();
    args.dk = dk.get();
    args.dv = dv.get();
    impl.backward(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    run.gradients.dq = download_tensor(p, dq);
    run.gradients.dk = download_tensor(p, dk);
    run.gradients.dv = download_tensor(p, dv);
    return run;
}

}  // namespace moba
