#include "harness/decode_run.hpp"

#include <algorithm>
#include <initializer_list>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/cuda_check.hpp"
#include "harness/device_random.hpp"
#include "harness/gpu_run.hpp"
#include "harness/held_stream.hpp"
#include "harness/inputs.hpp"
#include "reference/decode_paged.hpp"

namespace moba {

ref::DecodeBatch DecodeCase::batch() const { return ref::DecodeBatch{base.problem, q_lens}; }

int DecodeCase::max_q_len() const { return *std::max_element(q_lens.begin(), q_lens.end()); }

std::string DecodeCase::flags() const {
    std::string text = fmt::format("{} --q-lens {}", base.problem.flags(), fmt::join(q_lens, ","));
    if (page_size > 0) text += fmt::format(" --page-size {}", page_size);
    return text + fmt::format(" --seed {} --inputs {}", base.seed, to_string(base.inputs));
}

DecodeHostInputs make_decode_inputs(const DecodeCase& c) {
    const ref::DecodeBatch b = c.batch();
    b.validate();
    HostInputs all = make_inputs(b.cache, c.base.seed, c.base.inputs);
    const std::size_t row = static_cast<std::size_t>(b.cache.heads_q) * static_cast<std::size_t>(b.cache.head_dim);
    DecodeHostInputs in;
    in.q_new.reserve(static_cast<std::size_t>(b.total_q()) * row);
    for (const std::int64_t t : b.query_positions())
        in.q_new.insert(in.q_new.end(), all.q.begin() + static_cast<std::ptrdiff_t>(t * row),
                        all.q.begin() + static_cast<std::ptrdiff_t>((t + 1) * row));
    in.k = std::move(all.k);
    in.v = std::move(all.v);
    return in;
}

std::vector<int> decode_page_order(const DecodeCase& c) {
    if (c.page_size < 1) throw std::invalid_argument(fmt::format("page size {} must be positive", c.page_size));
    int pages = 0;
    for (const int len : c.base.problem.seqlens) pages += (len + c.page_size - 1) / c.page_size;
    std::vector<int> order(static_cast<std::size_t>(pages));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(c.base.seed ^ 0x9a6e5ULL));
    return order;
}

namespace {

std::int64_t pool_rows(const DecodeCase& c) {
    if (c.page_size == 0) return c.base.problem.total_tokens();
    std::int64_t pages = 0;
    for (const int len : c.base.problem.seqlens) pages += (len + c.page_size - 1) / c.page_size;
    return pages * c.page_size;
}

template <class T>
DeviceBuffer upload_vector(const std::vector<T>& values) {
    DeviceBuffer buf(values.size() * sizeof(T));
    buf.upload(values.data(), buf.bytes());
    return buf;
}

DeviceBuffer upload_dtype(DType dtype, const std::vector<float>& values) {
    return upload_vector(encode(dtype, values));
}

std::vector<float> download_dtype(DType dtype, const GuardedBuffer& buf) {
    std::vector<unsigned char> bytes(buf.bytes());
    buf.download(bytes.data(), bytes.size());
    return decode(dtype, bytes);
}

}  // namespace

std::size_t decode_device_bytes(const Implementation& impl, const DecodeCase& c) {
    const Problem& p = c.base.problem;
    const ref::DecodeBatch b = c.batch();
    const std::size_t e = dtype_bytes(p.dtype);
    const auto total_q = static_cast<std::size_t>(b.total_q());
    const std::size_t q = total_q * static_cast<std::size_t>(p.heads_q * p.head_dim) * e;
    const std::size_t kv = static_cast<std::size_t>(pool_rows(c)) * static_cast<std::size_t>(p.heads_kv * p.head_dim) * e;
    const std::size_t sel = total_q * static_cast<std::size_t>(p.heads_q * p.sel_slots()) * 4;
    const std::size_t lse = total_q * static_cast<std::size_t>(p.heads_q) * 4;
    const std::size_t ws = impl.decode_workspace_bytes ? impl.decode_workspace_bytes(p, b.total_q()) : 0;
    return 2 * q + 2 * kv + sel + lse + ws + 8 * (p.seqlens.size() + 1) * 2;
}

DeviceDecode::DeviceDecode(const Implementation& impl, const DecodeCase& c, const DecodeHostInputs& in)
    : impl_(impl), case_(c), batch_(c.batch()) {
    batch_.validate();
    if (!impl.has_decode()) throw std::invalid_argument(impl.name + " has no decode step");
    require_device_memory(decode_device_bytes(impl, c), fmt::format("{} decode on {}", impl.name, c.flags()));
    upload_caches(in.k, &in.v);
    allocate_and_prepare(in.q_new, /*watch_inputs=*/true);
}

DeviceDecode::DeviceDecode(const Implementation& impl, const DecodeCase& c, const std::vector<float>& q_new,
                           const std::vector<float>& k)
    : impl_(impl), case_(c), batch_(c.batch()) {
    batch_.validate();
    if (!impl.has_decode()) throw std::invalid_argument(impl.name + " has no decode step");
    require_device_memory(decode_device_bytes(impl, c), fmt::format("{} decode on {}", impl.name, c.flags()));
    upload_caches(k, nullptr);
    allocate_and_prepare(q_new, /*watch_inputs=*/false);  // caches of gigabytes: not copied again
}

void DeviceDecode::upload_caches(const std::vector<float>& k, const std::vector<float>* v) {
    const Problem& p = batch_.cache;
    const auto cu_k = p.cu_seqlens();
    cu_k_ = upload_vector(cu_k);
    std::vector<std::int32_t> cu_q(batch_.q_lens.size() + 1, 0);
    for (std::size_t r = 0; r < batch_.q_lens.size(); ++r) cu_q[r + 1] = cu_q[r] + batch_.q_lens[r];
    cu_q_ = upload_vector(cu_q);
    if (case_.page_size == 0) {
        k_ = upload_dtype(p.dtype, k);
        if (v) v_ = upload_dtype(p.dtype, *v);
    } else {
        // v is paged with k even when drawn on the device: the pool is filled after the layout
        // is fixed, and a drawn v has no order to keep.
        const ref::PagedKvCache paged = ref::page_caches(batch_, k, v ? *v : k, case_.page_size, decode_page_order(case_));
        paged.validate(batch_);
        k_ = upload_dtype(p.dtype, paged.k_pages);
        if (v) v_ = upload_dtype(p.dtype, paged.v_pages);
        table_width_ = 0;
        for (const auto& t : paged.block_tables) table_width_ = std::max(table_width_, static_cast<int>(t.size()));
        std::vector<std::int32_t> table(paged.block_tables.size() * static_cast<std::size_t>(table_width_), -1);
        for (std::size_t r = 0; r < paged.block_tables.size(); ++r)
            std::copy(paged.block_tables[r].begin(), paged.block_tables[r].end(),
                      table.begin() + static_cast<std::ptrdiff_t>(r * static_cast<std::size_t>(table_width_)));
        table_ = upload_vector(table);
    }
    if (!v) {
        v_ = DeviceBuffer(k_.bytes());
        fill_normal_device(p.dtype, v_.get(), static_cast<std::int64_t>(k_.bytes() / dtype_bytes(p.dtype)),
                           case_.base.seed, /*stream=*/2, nullptr);
    }
}

void DeviceDecode::allocate_and_prepare(const std::vector<float>& q_new, bool watch_inputs) {
    const Problem& p = batch_.cache;
    const std::int64_t total_q = batch_.total_q();
    if (static_cast<std::int64_t>(q_new.size()) != total_q * p.heads_q * p.head_dim)
        throw std::invalid_argument(fmt::format("q_new has {} elements; the batch needs {}", q_new.size(),
                                                total_q * p.heads_q * p.head_dim));
    q_ = upload_dtype(p.dtype, q_new);
    sel_ = GuardedBuffer(static_cast<std::size_t>(total_q * p.heads_q * p.sel_slots()) * 4);
    out_ = GuardedBuffer(q_.bytes());
    lse_ = GuardedBuffer(static_cast<std::size_t>(total_q * p.heads_q) * 4);
    // Poisoned before decode_prepare (SEMANTICS.md §5): what prepare keeps for the steps must be
    // what it wrote, not what fresh memory happened to hold (zeros, often). Left as allocated in
    // --sanitize's child run, so initcheck reports a read of a byte prepare and the steps never
    // wrote. The steps then run on what prepare and the earlier steps left.
    workspace_ = GuardedBuffer(impl_.decode_workspace_bytes ? impl_.decode_workspace_bytes(p, total_q) : 0,
                               guard_bands_enabled() ? GuardedBuffer::Body::poisoned : GuardedBuffer::Body::as_allocated);
    // Before decode_prepare, so a prepare that writes an input is caught at the first step.
    if (watch_inputs)
        for (const auto& [buffer, name] : {std::pair{&q_, "q"}, std::pair{&k_, "the k cache"}, std::pair{&v_, "the v cache"},
                                           std::pair{&cu_q_, "cu_q"}, std::pair{&cu_k_, "cu_k"},
                                           std::pair{&table_, "the block table"}}) {
            std::vector<unsigned char> bytes(buffer->bytes());
            buffer->download(bytes.data(), bytes.size());
            watched_.push_back({buffer, name, std::move(bytes)});
        }
    if (impl_.decode_prepare) {
        impl_.decode_prepare(args(true));
        MOBA_CUDA_CALL(cudaDeviceSynchronize());
    }
}

DecodeArgs DeviceDecode::args(bool gate) const {
    DecodeArgs a{};
    a.cache = batch_.cache;
    a.total_q = batch_.total_q();
    a.max_q_len = case_.max_q_len();
    a.cu_q = cu_q_.as<std::int32_t>();
    a.q = q_.get();
    a.cu_k = cu_k_.as<std::int32_t>();
    a.k = k_.get();
    a.v = v_.get();
    a.block_table = case_.page_size > 0 ? table_.as<std::int32_t>() : nullptr;
    a.page_size = case_.page_size;
    a.table_width = table_width_;
    a.gate = gate;
    a.sel = sel_.as<std::int32_t>();
    a.out = out_.get();
    a.lse = lse_.as<float>();
    a.workspace = workspace_.get();
    a.stream = nullptr;
    return a;
}

void DeviceDecode::set_selection(const Selection& sel) {
    if (sel.blocks.size() * 4 != sel_.bytes() || sel.slots != batch_.cache.sel_slots())
        throw std::invalid_argument("selection shape does not match the decode batch");
    sel_.upload(sel.blocks.data(), sel_.bytes());
    const auto* bytes = reinterpret_cast<const unsigned char*>(sel.blocks.data());
    given_sel_.assign(bytes, bytes + sel_.bytes());
}

DeviceDecode::Result DeviceDecode::run(bool gate, bool held) {
    const Problem& p = batch_.cache;
    HeldStream* stream = held ? &held_stream() : nullptr;
    if (stream) stream->hold(kSecondCallHoldMs);
    const cudaStream_t on = stream ? stream->get() : nullptr;
    out_.poison(on);
    lse_.poison(on);
    if (gate) sel_.poison(on);
    Result r;
    const std::initializer_list<std::pair<GuardedBuffer*, const char*>> guarded{
        {&sel_, "the selection"}, {&out_, "out"}, {&lse_, "lse"}, {&workspace_, "the workspace"}};
    // Guards are re-armed after every step, so damage found now is decode_prepare's.
    auto note_damage = [&](const std::string& when) {
        for (const auto& [buf, name] : guarded)
            if (std::string d = buf->damage(name); !d.empty()) r.stray_writes.push_back(when + ": " + d);
    };
    note_damage("decode_prepare");
    DecodeArgs a = args(gate);
    a.stream = on;
    impl_.decode(a);
    MOBA_CUDA_CALL(cudaGetLastError());
    MOBA_CUDA_CALL(cudaDeviceSynchronize());  // the held stream too (HeldStream::finish's wait)
    r.sel.slots = p.sel_slots();
    r.sel.blocks.resize(sel_.bytes() / 4);
    sel_.download(r.sel.blocks.data(), sel_.bytes());
    r.out = download_dtype(p.dtype, out_);
    r.lse.resize(lse_.bytes() / 4);
    lse_.download(r.lse.data(), lse_.bytes());
    // What the step wrote outside its outputs, and the inputs it changed (SEMANTICS.md §5).
    const std::string when = gate ? "decode step (gating)" : "decode step";
    note_damage(when);
    for (const auto& [buf, name] : guarded) buf->rearm_guards();  // the next step's damage is its own
    if (!gate && !given_sel_.empty()) {
        const auto* now = reinterpret_cast<const unsigned char*>(r.sel.blocks.data());
        if (std::string c = input_change(given_sel_, {now, given_sel_.size()}, "the selection"); !c.empty())
            r.stray_writes.push_back(when + ": " + c);
    }
    for (const Watched& w : watched_) {
        std::vector<unsigned char> now(w.buffer->bytes());
        w.buffer->download(now.data(), now.size());
        if (std::string c = input_change(w.bytes, now, w.name); !c.empty()) r.stray_writes.push_back(when + ": " + c);
    }
    return r;
}

}  // namespace moba
