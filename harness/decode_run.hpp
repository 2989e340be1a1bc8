// One decode step (SEMANTICS.md §9, DecodeArgs) of a registered implementation on the GPU: a
// decode case (the caches as a prefill problem, the new tokens per request, packed or paged
// caches), its host inputs drawn as make_inputs would, the device tensors in the dtype, and a
// run that poisons every output (NaN, sel -1) before the launch and copies the results back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/check.hpp"
#include "harness/device.hpp"
#include "harness/guarded_buffer.hpp"
#include "harness/registry.hpp"
#include "reference/decode.hpp"

namespace moba {

struct DecodeCase {
    CheckCase base;           // base.problem: the caches (seqlens = cache lengths, new tokens included)
    std::vector<int> q_lens;  // new tokens per request
    int page_size = 0;        // 0: packed caches; else paged, pages of this many tokens in seeded order

    ref::DecodeBatch batch() const;  // not validated
    int max_q_len() const;           // the most new tokens of one request (q_lens not empty)
    // "--seqlens ... --q-lens 1,7 [--page-size 24] --seed N --inputs F": the flags that rerun it.
    std::string flags() const;
};

// q of the new tokens [total_q, Hq, D] and the packed caches k, v [total_k, Hkv, D]: rows of
// make_inputs(base.problem, base.seed, base.inputs), so a decode case reads the same values the
// prefill rows at those positions do.
struct DecodeHostInputs {
    std::vector<float> q_new, k, v;
};
DecodeHostInputs make_decode_inputs(const DecodeCase& c);

// The pool order of a paged case: a permutation of the pages its requests need, drawn from the
// seed (so pages are neither in request order nor contiguous).
std::vector<int> decode_page_order(const DecodeCase& c);

// Device bytes of one step of `impl` on the case (inputs, outputs, selection, workspace).
std::size_t decode_device_bytes(const Implementation& impl, const DecodeCase& c);

// The case's tensors on the device and the implementation's kept state (decode_prepare runs
// once, in the constructor, as a server computes block means at prefill).
class DeviceDecode {
public:
    // Refuses (OutOfDeviceMemory) before allocating when the run would not fit.
    DeviceDecode(const Implementation& impl, const DecodeCase& c, const DecodeHostInputs& inputs);
    // For sizes whose v need never be on the host (the decode study): v drawn on the device.
    DeviceDecode(const Implementation& impl, const DecodeCase& c, const std::vector<float>& q_new,
                 const std::vector<float>& k);

    // The step's arguments on the default stream. gate false: sel is read (set_selection).
    DecodeArgs args(bool gate) const;
    void set_selection(const Selection& sel);

    struct Result {
        Selection sel;  // what the step wrote (gate) or was given
        std::vector<float> out, lse;
        // Writes outside the outputs (guard bands around sel, out, lse, the workspace) and inputs
        // the step changed (q, the caches, cu_q, cu_k, the block table, a given selection), one
        // line each (SEMANTICS.md §5); inputs are watched only when the constructor had them all
        // on the host (the check's constructor).
        std::vector<std::string> stray_writes;
    };
    // Poisons out, lse (and sel when gating), runs one step, synchronises, copies back. With
    // `held`, the step runs on a non-blocking stream held behind a spinning kernel and the
    // poisoning is queued there (held_stream.hpp): work launched on another stream than
    // args.stream comes back poisoned.
    Result run(bool gate, bool held = false);

    const ref::DecodeBatch& batch() const { return batch_; }

private:
    void upload_caches(const std::vector<float>& k, const std::vector<float>* v);
    void allocate_and_prepare(const std::vector<float>& q_new, bool watch_inputs);

    const Implementation& impl_;
    DecodeCase case_;
    ref::DecodeBatch batch_;
    DeviceBuffer cu_q_, cu_k_, q_, k_, v_, table_;
    GuardedBuffer sel_, out_, lse_, workspace_;
    int table_width_ = 0;
    // What the inputs held after upload (and the selection after set_selection), for the check
    // that a step leaves them as they were; empty when not watched.
    struct Watched {
        const DeviceBuffer* buffer;
        const char* name;
        std::vector<unsigned char> bytes;
    };
    std::vector<Watched> watched_;
    std::vector<unsigned char> given_sel_;
};

}  // namespace moba
