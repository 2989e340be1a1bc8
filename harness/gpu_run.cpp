#include "harness/gpu_run.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <fmt/format.h>

#include "core/cuda_check.hpp"
#include "harness/guarded_buffer.hpp"
#include "harness/held_stream.hpp"
#include "harness/scoped_env.hpp"
#include "kernels/moba/head_passes.hpp"  // kAccumulatorBudgetEnv
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

// Workspaces are poisoned before the first calls (SEMANTICS.md §5), except in the sanitizer's
// child run (MOBA_NO_GUARDS=1, guarded_buffer.hpp): there they stay as allocated, so initcheck
// still reports a read of a workspace byte no call wrote, which the poison would hide.
bool poison_workspaces() { return guard_bands_enabled(); }

GuardedBuffer workspace_buffer(std::size_t bytes) {
    return GuardedBuffer(bytes, poison_workspaces() ? GuardedBuffer::Body::poisoned : GuardedBuffer::Body::as_allocated);
}

std::size_t tensor_bytes(const Problem& p, std::int64_t elems) {
    return static_cast<std::size_t>(elems) * dtype_bytes(p.dtype);
}

DeviceBuffer upload_bytes(const std::vector<unsigned char>& bytes) {
    DeviceBuffer buf(bytes.size());
    buf.upload(bytes.data(), bytes.size());
    return buf;
}

std::vector<unsigned char> download_bytes(const DeviceBuffer& buf) {
    std::vector<unsigned char> bytes(buf.bytes());
    buf.download(bytes.data(), bytes.size());
    return bytes;
}

std::vector<float> download_tensor(const Problem& p, const GuardedBuffer& buf) {
    std::vector<unsigned char> bytes(buf.bytes());
    buf.download(bytes.data(), bytes.size());
    return decode(p.dtype, bytes);
}

std::span<const unsigned char> bytes_of(const std::vector<std::int32_t>& v) {
    return {reinterpret_cast<const unsigned char*>(v.data()), v.size() * sizeof(std::int32_t)};
}

// A phase's guarded buffers with the names its records give them.
using Named = std::pair<GuardedBuffer*, const char*>;

// Appends "WHEN: what" for each guard of `buffers` that was written into.
void note_damage(const std::string& when, std::span<const Named> buffers, std::vector<std::string>& stray) {
    for (const auto& [buf, name] : buffers)
        if (std::string d = buf->damage(name); !d.empty()) stray.push_back(when + ": " + d);
}

// The guards back to kGuardByte once their damage is reported, so the next call's is its own.
void rearm(std::span<const Named> buffers) {
    for (const auto& [buf, name] : buffers) buf->rearm_guards();
}

// Before a second call: rearmed, and finished before the held stream's work starts.
void rearm_before_second_call(std::span<const Named> buffers) {
    rearm(buffers);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
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
    const auto* cu_bytes = reinterpret_cast<const unsigned char*>(cu.data());
    const std::vector<unsigned char> cu_encoded(cu_bytes, cu_bytes + cu.size() * sizeof(std::int32_t));
    auto upload = [](DeviceBuffer& buf, ByteDigest& kept, const std::vector<unsigned char>& bytes) {
        buf = upload_bytes(bytes);
        kept = digest(bytes);
    };
    upload(cu_seqlens, uploaded_cu_, cu_encoded);
    upload(q, uploaded_q_, encode(problem.dtype, inputs.q));
    upload(k, uploaded_k_, encode(problem.dtype, inputs.k));
    upload(v, uploaded_v_, encode(problem.dtype, inputs.v));
    upload(dout, uploaded_dout_, encode(problem.dtype, inputs.dout));
}

std::vector<std::string> DeviceInputs::changed(const std::string& when) const {
    std::vector<std::string> out;
    for (const auto& [buf, uploaded, name] :
         {std::tuple{&cu_seqlens, &uploaded_cu_, "cu_seqlens"}, std::tuple{&q, &uploaded_q_, "q"},
          std::tuple{&k, &uploaded_k_, "k"}, std::tuple{&v, &uploaded_v_, "v"},
          std::tuple{&dout, &uploaded_dout_, "dout"}})
        if (std::string c = input_change(*uploaded, download_bytes(*buf), name); !c.empty())
            out.push_back(when + ": " + c);
    return out;
}

Selection run_gating(const Implementation& impl, const DeviceInputs& in, std::vector<std::string>* stray_writes,
                     Selection* again) {
    if (!impl.has_gating()) throw std::logic_error(impl.name + " has no gating");
    const Problem& p = in.problem();
    Selection sel;
    sel.slots = p.sel_slots();
    sel.blocks.resize(static_cast<std::size_t>(p.sel_elems()));
    GuardedBuffer d_sel(sel.blocks.size() * sizeof(std::int32_t));
    // Poisoned: what a workspace holds when a call starts means nothing (SEMANTICS.md §5).
    GuardedBuffer workspace = workspace_buffer(impl.gating_workspace_bytes ? impl.gating_workspace_bytes(p) : 0);
    GatingArgs args{p, in.cu_seqlens.as<std::int32_t>(), in.q.get(), in.k.get(),
                    d_sel.as<std::int32_t>(), workspace.get(), nullptr};
    const std::array<Named, 2> buffers{{{&d_sel, "the selection"}, {&workspace, "the gating workspace"}}};
    impl.gating(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    d_sel.download(sel.blocks.data(), d_sel.bytes());
    std::vector<std::string> inputs_changed;
    if (stray_writes || again) inputs_changed = in.changed("gating");
    if (stray_writes) {
        note_damage("gating", buffers, *stray_writes);
        stray_writes->insert(stray_writes->end(), inputs_changed.begin(), inputs_changed.end());
    }
    // A gating that changed q or k is not called again: its second call would read other inputs
    // than the checked ones, and the change is already reported.
    if (again && !inputs_changed.empty()) *again = sel;
    if (again && inputs_changed.empty()) {
        // On a held non-blocking stream: a gating that launches elsewhere writes before the
        // poisoning lands (held_stream.hpp).
        rearm_before_second_call(buffers);
        HeldStream& held = held_stream();
        held.hold(kSecondCallHoldMs);
        d_sel.poison(held.get());
        args.stream = held.get();
        impl.gating(args);
        held.finish();
        again->slots = sel.slots;
        again->blocks.resize(sel.blocks.size());
        d_sel.download(again->blocks.data(), d_sel.bytes());
        if (stray_writes) note_damage("the second gating", buffers, *stray_writes);
    }
    return sel;
}

namespace {

AttentionArgs input_args(const Problem& problem, const DeviceBuffer& cu_seqlens, const DeviceBuffer& q,
                         const DeviceBuffer& k, const DeviceBuffer& v, const std::int32_t* sel, void* workspace) {
    AttentionArgs args{};
    args.problem = problem;
    args.cu_seqlens = cu_seqlens.as<std::int32_t>();
    args.q = q.get();
    args.k = k.get();
    args.v = v.get();
    args.sel = sel;
    args.workspace = workspace;
    args.stream = nullptr;
    return args;
}

}  // namespace

AttentionArgs forward_args(const Problem& problem, const DeviceBuffer& cu_seqlens, const DeviceBuffer& q,
                           const DeviceBuffer& k, const DeviceBuffer& v, const std::int32_t* sel,
                           const DeviceBuffer& out, const DeviceBuffer& lse, const DeviceBuffer& workspace) {
    AttentionArgs args = input_args(problem, cu_seqlens, q, k, v, sel, workspace.get());
    args.out = out.get();
    args.lse = lse.as<float>();
    return args;
}

bool second_calls_one_kv_head_per_pass(const Problem& problem) { return problem.heads_kv > 1; }

namespace {

// The environment of a second call: one kv head per head pass where there are several kv heads
// (second_calls_one_kv_head_per_pass), else unchanged.
class SecondCallEnv {
public:
    explicit SecondCallEnv(const Problem& problem) {
        if (second_calls_one_kv_head_per_pass(problem)) env_.emplace(sparse::kAccumulatorBudgetEnv, "0");
    }

private:
    std::optional<ScopedEnv> env_;
};

}  // namespace

AttentionRun run_attention(const Implementation& impl, const DeviceInputs& in,
                           const Selection& selection, bool with_backward, bool call_twice) {
    const Problem& p = in.problem();
    if (selection.slots != p.sel_slots() ||
        selection.blocks.size() != static_cast<std::size_t>(p.sel_elems()))
        throw std::invalid_argument("selection shape does not match the problem");
    DeviceBuffer d_sel(selection.blocks.size() * sizeof(std::int32_t));
    d_sel.upload(selection.blocks.data(), d_sel.bytes());
    // Every output between guard bands, poisoned (SEMANTICS.md §5: unwritten elements fail,
    // writes outside the outputs fail).
    GuardedBuffer out(tensor_bytes(p, p.q_elems()));
    GuardedBuffer lse(4 * static_cast<std::size_t>(p.lse_elems()));
    // The workspace poisoned too, and again before the first backward: a forward that reads it
    // before writing it, or a backward that reads what its forward left there, goes wrong on the
    // first call (SEMANTICS.md §5). The second calls run on what the first ones left.
    // Sized for both calls: the second ones may split the heads otherwise (SecondCallEnv), and a
    // pass of fewer heads needs no more in the kernels here, but an entry's sizes are its own.
    std::size_t workspace_bytes = impl.attention_workspace_bytes ? impl.attention_workspace_bytes(p) : 0;
    if (call_twice && impl.attention_workspace_bytes) {
        const SecondCallEnv env(p);
        workspace_bytes = std::max(workspace_bytes, impl.attention_workspace_bytes(p));
    }
    GuardedBuffer workspace = workspace_buffer(workspace_bytes);
    AttentionArgs args = input_args(p, in.cu_seqlens, in.q, in.k, in.v, d_sel.as<std::int32_t>(), workspace.get());
    args.out = out.get();
    args.lse = lse.as<float>();
    const std::array<Named, 3> forward_buffers{{{&out, "out"}, {&lse, "lse"}, {&workspace, "the workspace"}}};
    impl.forward(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());

    AttentionRun run;
    run.forward.out = download_tensor(p, out);
    run.forward.lse.resize(static_cast<std::size_t>(p.lse_elems()));
    lse.download(run.forward.lse.data(), lse.bytes());
    // What was written outside the outputs, and any input changed, after each phase.
    // A phase that changed an input ends the second calls: they would read other inputs than
    // the checked ones (the change itself is reported, once).
    bool inputs_changed = false;
    auto note_stray = [&](const std::string& when, std::span<const Named> outputs) {
        note_damage(when, outputs, run.stray_writes);
        for (std::string& c : in.changed(when)) {
            run.stray_writes.push_back(std::move(c));
            inputs_changed = true;
        }
        if (std::string c = input_change(bytes_of(selection.blocks), download_bytes(d_sel), "the selection"); !c.empty()) {
            run.stray_writes.push_back(when + ": " + c);
            inputs_changed = true;
        }
    };
    note_stray("forward", forward_buffers);
    // The second forward, on what the first call (and, with a backward, the first backward)
    // left in the workspace, on a held non-blocking stream (held_stream.hpp): work launched on
    // another stream than args.stream finishes before the poisoning queued there lands.
    HeldStream* held = nullptr;
    auto forward_again = [&] {
        rearm_before_second_call(forward_buffers);
        held = &held_stream();
        held->hold(kSecondCallHoldMs);
        out.poison(held->get());
        lse.poison(held->get());
        args.stream = held->get();
        {
            const SecondCallEnv env(p);
            impl.forward(args);
        }
        held->finish();
        ForwardOutput f;
        f.out = download_tensor(p, out);
        f.lse.resize(static_cast<std::size_t>(p.lse_elems()));
        lse.download(f.lse.data(), lse.bytes());
        run.forward_again = std::move(f);
        note_damage("the second forward", forward_buffers, run.stray_writes);
    };
    if (!with_backward || !impl.has_backward()) {
        if (call_twice && !inputs_changed) forward_again();
        return run;
    }

    GuardedBuffer dq(tensor_bytes(p, p.q_elems())), dk(tensor_bytes(p, p.kv_elems())),
        dv(tensor_bytes(p, p.kv_elems()));
    const std::array<Named, 6> backward_buffers{
        {{&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}, forward_buffers[0], forward_buffers[1], forward_buffers[2]}};
    rearm(forward_buffers);  // the forward's damage is reported once, above
    if (poison_workspaces()) workspace.poison();
    args.dout = in.dout.get();
    args.dq = dq.get();
    args.dk = dk.get();
    args.dv = dv.get();
    impl.backward(args);
    MOBA_CUDA_CALL(cudaDeviceSynchronize());
    run.gradients.dq = download_tensor(p, dq);
    run.gradients.dk = download_tensor(p, dk);
    run.gradients.dv = download_tensor(p, dv);
    note_stray("backward", backward_buffers);
    if (!call_twice || inputs_changed) return run;
    // Forward, backward, forward, backward: the second backward reads the second forward's out
    // and lse, as the next training step would.
    forward_again();
    rearm_before_second_call(backward_buffers);
    held->hold(kSecondCallHoldMs);
    for (GuardedBuffer* b : {&dq, &dk, &dv}) b->poison(held->get());
    {
        const SecondCallEnv env(p);
        impl.backward(args);  // args.stream is the held stream since forward_again
    }
    held->finish();
    GradientOutput g;
    g.dq = download_tensor(p, dq);
    g.dk = download_tensor(p, dk);
    g.dv = download_tensor(p, dv);
    run.gradients_again = std::move(g);
    note_damage("the second backward", backward_buffers, run.stray_writes);
    return run;
}

}  // namespace moba
