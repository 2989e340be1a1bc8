#!/usr/bin/env python3
# sdpa_anchors.py: reference points for the MoBA harness. Times PyTorch's SDPA with its cuDNN
# and flash backends (and a flex_attention MoBA) in a process of its own, apart from the C++
# harness, on the harness's configurations, and writes a moba-report that `moba compare` and
# `moba export` read beside the project's kernels. It lives in harness/ because it is a tool;
# reports/ holds data. A later issue makes it a user of a Python package instead of a script.
"""PyTorch anchors beside the MoBA harness.

Times what a PyTorch user would run instead of the project's kernels, on the same
configurations, and writes a `moba-report` (reports/FORMAT.md) that `moba export` and
`moba compare` read:
  torch_sdpa_flash  F.scaled_dot_product_attention(is_causal=True), flash backend only
  torch_sdpa_cudnn  the same, cuDNN backend only
  flex_moba         MoBA gating in torch (SEMANTICS.md §2) + flex_attention with a block-selection mask_mod
Every implementation is first checked on sampled query rows against float64 (the rule of
reference/SEMANTICS.md); only a passing one is timed.  `--self-test` checks the gating, the
pair counting and the row check on small CPU tensors.
"""
import argparse, contextlib, ctypes, gc, importlib, json, math, os, shlex, socket, statistics, subprocess, sys, time, warnings
from datetime import datetime, timezone

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("sdpa_anchors.py needs PyTorch (python3 -c 'import torch' fails)")
try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:
    SDPBackend = sdpa_kernel = None
try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:
    create_block_mask = flex_attention = None

IMPLS = ("torch_sdpa_flash", "torch_sdpa_cudnn", "flex_moba")
SDPA_BACKEND = {"torch_sdpa_flash": "FLASH_ATTENTION", "torch_sdpa_cudnn": "CUDNN_ATTENTION"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ATOL = {"bf16": 2.0 ** -9, "fp16": 2.0 ** -12}  # forward atol of SEMANTICS.md
FLEX_BLOCK = 128
CHECK_ROWS = 16
INF = float("inf")
TOOL, VERSION = "anchors", "anchors-1"


class NotSupported(Exception):
    pass


# ---------------------------------------------------------------- sizes, pairs, FLOPs (SEMANTICS.md §6)
def parse_len(text):
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20}.get(t[-1:], 1)
    value = int(t[:-1] if mult > 1 else t) * mult
    if value <= 0:
        raise ValueError(text)
    return value


def dense_pairs(L, hq):
    return hq * L * (L + 1) // 2


def moba_pairs(L, block, topk, hq):
    """Per query i of own block b: min(k-1, b) full past blocks plus i - b*Bs + 1 own keys."""
    total = 0
    for b in range(-(-L // block)):
        c = min(block, L - b * block)  # queries (and keys) of block b
        total += c * min(topk - 1, b) * block + c * (c + 1) // 2
    return hq * total


def gating_flops(L, hq, hkv, D, block):
    """SEMANTICS.md: block means D*Hkv*L adds, then 2*D per scored past block b(i) per (i, h)."""
    past = sum(b * min(block, L - b * block) for b in range(-(-L // block)))
    return D * hkv * L + 2 * D * hq * past


def layout(hq, hkv):
    return "MHA" if hq == hkv else ("MQA" if hkv == 1 else "GQA")


# ---------------------------------------------------------------- MoBA gating (SEMANTICS.md §2)
def moba_gating(q, k, block, topk, chunk_elems=1 << 28):
    """q [Hq, L, D], k [Hkv, L, D] -> sel bool [Hq, L, n]: sel[h, i, j] = block j is attended."""
    hq, L, D = q.shape
    hkv = k.shape[0]
    G, n, nfull = hq // hkv, -(-L // block), L // block
    kbar = torch.zeros(hkv, n, D, dtype=torch.float32, device=q.device)  # zero rows never score
    if nfull:
        kbar[:, :nfull] = k[:, :nfull * block].float().reshape(hkv, nfull, block, D).mean(dim=2)
    own = torch.arange(L, device=q.device) // block
    j = torch.arange(n, device=q.device)
    past = j[None, :] < own[:, None]                                     # [L, n]
    fill = torch.full((L, n), -INF, device=q.device).masked_fill_(j[None, :] == own[:, None], INF)
    kk = min(topk, n)
    sel = torch.zeros(hq, L, n, dtype=torch.bool, device=q.device)
    step = max(1, chunk_elems // (G * L * n))                            # kv heads per chunk
    for g0 in range(0, hkv, step):
        g1 = min(hkv, g0 + step)
        qc = q[g0 * G:g1 * G].float().reshape(g1 - g0, G * L, D)
        s = torch.bmm(qc, kbar[g0:g1].transpose(1, 2)).reshape((g1 - g0) * G, L, n)
        s = torch.where(past, s, fill)                                   # own +inf, future -inf
        order = torch.sort(-s, dim=-1, stable=True).indices[..., :kk]   # ties: lower index first
        keep = torch.gather(s, -1, order) > -INF                         # drop selected -inf
        sel[g0 * G:g1 * G].scatter_(-1, order, keep)
    return sel


def moba_mask_mod(sel, block):
    def mask_mod(b, h, q_idx, kv_idx):
        return sel[h, q_idx, kv_idx // block] & (kv_idx <= q_idx)
    return mask_mod


# ---------------------------------------------------------------- forward check on sampled rows
def sample_rows(L, seed, count=CHECK_ROWS):
    if L <= count:
        return list(range(L))
    g = torch.Generator().manual_seed(seed ^ 0x5EED)
    rows = {0, L - 1}
    for r in torch.randperm(L, generator=g).tolist():
        if len(rows) >= count:
            break
        rows.add(r)
    return sorted(rows)


def check_rows(out, q, k, v, rows, scale, dtype_name, sel=None, block=None):
    """out, q [Hq, L, D]; k, v [Hkv, L, D]. max|out - ref64| <= 2 max|base - ref64| + atol, where
    base = fp32 scores from the rounded inputs, P rounded to the dtype, P@V in fp32, rounded."""
    dtype = DTYPES[dtype_name]
    hq, hkv = q.shape[0], k.shape[0]
    G = hq // hkv
    err = base_err = 0.0
    nonfinite = 0
    for i in rows:
        blk = torch.arange(i + 1, device=q.device) // block if sel is not None else None
        for g in range(hkv):
            hs = slice(g * G, (g + 1) * G)
            Q, K, V = q[hs, i], k[g, :i + 1], v[g, :i + 1]
            s64 = (Q.double() @ K.double().T) * scale
            s32 = (Q.float() @ K.float().T) * scale
            if sel is not None:
                allowed = sel[hs, i][:, blk]                             # [G, i+1]
                s64 = s64.masked_fill(~allowed, -INF)
                s32 = s32.masked_fill(~allowed, -INF)
            ref = torch.softmax(s64, dim=-1) @ V.double()
            p = torch.exp(s32 - s32.amax(dim=-1, keepdim=True))
            P = (p / p.sum(dim=-1, keepdim=True)).to(dtype)
            base = (P.float() @ V.float()).to(dtype).double()
            got = out[hs, i].double()
            nonfinite += int((~torch.isfinite(got)).sum())
            err = max(err, float((got - ref).abs().max()))
            base_err = max(base_err, float((base - ref).abs().max()))
    bound = 2.0 * base_err + ATOL[dtype_name]
    res = {"check_rows": len(rows), "check_max_abs_err": err, "check_bound": bound,
           "check_ratio": err / bound, "outcome": "passed", "reason": ""}
    if nonfinite:
        res.update(outcome="incorrect", reason=f"{nonfinite} non-finite values in the sampled output rows")
    elif err > bound:
        res.update(outcome="incorrect", reason=f"forward check on {len(rows)} sampled rows: max|err| "
                   f"{err:.3g} > bound {bound:.3g} (2 x baseline {base_err:.3g} + atol)")
    return res


# ---------------------------------------------------------------- timing, clocks, device
def timing_stats(samples, warmup, stop):
    mean = statistics.fmean(samples)
    rsd = statistics.stdev(samples) / mean if len(samples) > 1 and mean > 0 else None
    return {"samples": len(samples), "median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "mean_ms": mean, "rel_stddev": rsd, "warmup": warmup, "stop": stop}


def time_region(fn, max_seconds, prewarmed, after_warmup=None):
    """CUDA events around each sample. Warm-up: 2 runs, or 1 when it took > 2 s and fn had run
    before (a first run may hold compilation). Sampling stops when the relative std dev is
    under 2% with 5 samples or more, at 50 samples, or after max_seconds."""
    def once():
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b)
    warm = 0
    while warm < 2:
        t = once()
        warm += 1
        if warm == 1 and prewarmed and t > 2000.0:
            break
    if after_warmup:
        after_warmup()
    samples, t0 = [], time.perf_counter()
    while True:
        samples.append(once())
        n = len(samples)
        mean = statistics.fmean(samples)
        rsd = statistics.stdev(samples) / mean if n > 1 and mean > 0 else None
        if n >= 5 and rsd is not None and rsd < 0.02:
            return timing_stats(samples, warm, "converged")
        if n >= 50:
            return timing_stats(samples, warm, "max_samples")
        if time.perf_counter() - t0 >= max_seconds:
            return timing_stats(samples, warm, "max_time")


def cuda_driver_info(ordinal):
    """Driver version, max SM / memory clocks and PCI bus id through the driver API (ctypes)."""
    info = {}
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        if lib.cuInit(0) != 0:
            return info
        value, dev = ctypes.c_int(), ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
            info["driver_version"] = value.value
        if lib.cuDeviceGet(ctypes.byref(dev), ordinal) != 0:
            return info
        for key, attr in (("sm_clock_mhz", 13), ("memory_clock_mhz", 36)):  # CU_DEVICE_ATTRIBUTE_*CLOCK_RATE (kHz)
            if lib.cuDeviceGetAttribute(ctypes.byref(value), attr, dev) == 0 and value.value > 0:
                info[key] = value.value // 1000
        buf = ctypes.create_string_buffer(64)
        if lib.cuDeviceGetPCIBusId(buf, 64, dev) == 0:
            info["pci_bus_id"] = buf.value.decode()
    except (OSError, AttributeError):
        pass
    return info


def sm_clock_now(bus_id):
    """Current SM clock (MHz) from nvidia-smi, matched by PCI bus id; None when unavailable."""
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=pci.bus_id,clocks.sm", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.count(",") == 1]
    tail = lambda b: b.lower().split(":", 1)[1] if b.count(":") == 2 else b.lower()  # drop the domain
    for bus, clock in rows:
        if len(rows) == 1 or (bus_id and tail(bus) == tail(bus_id)):
            try:
                return float(clock)
            except ValueError:
                return None
    return None


def device_json():
    """The envelope's device. Values the driver does not give are written 0, as the C++ harness does."""
    if not torch.cuda.is_available():
        return {"present": False, "name": "no GPU", "reason": "torch.cuda.is_available() is False"}, None
    idx = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(idx)
    drv = cuda_driver_info(idx)
    major, minor = (torch.version.cuda or "0.0").split(".")[:2]
    return {"present": True, "name": p.name, "ordinal": idx, "compute_capability": f"{p.major}.{p.minor}",
            "sms": p.multi_processor_count, "memory_bytes": p.total_memory,
            "sm_clock_mhz": drv.get("sm_clock_mhz", 0), "memory_clock_mhz": drv.get("memory_clock_mhz", 0),
            "driver_version": drv.get("driver_version", 0),
            "runtime_version": int(major) * 1000 + int(minor) * 10}, drv.get("pci_bus_id")


def git_info():
    here = os.path.dirname(os.path.abspath(__file__))
    def git(*a):
        return subprocess.run(["git", *a], cwd=here, capture_output=True, text=True, timeout=15, check=True).stdout
    try:
        return git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("MOBA_GIT_SHA", "unknown"), os.environ.get("MOBA_GIT_DIRTY", "") in ("1", "true")


# ---------------------------------------------------------------- the report
def finite(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


class Report:
    OUTCOMES = ("passed", "incorrect", "failed", "not supported", "skipped")

    def __init__(self, path, argv, device):
        sha, dirty = git_info()
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.path = path
        self.doc = {"format": "moba-report", "format_version": 1, "complete": False,
                    "meta": {"tool": TOOL, "argv": argv, "command": shlex.join(["python3"] + argv),
                             "git_sha": sha, "git_dirty": dirty, "version": VERSION,
                             "host": socket.gethostname(), "started": now},
                    "device": device, "records": [], "summary": {}}
        self.write()  # an unwritable path fails before any work

    def write(self):
        recs = self.doc["records"]
        self.doc["summary"] = {"records": len(recs), **{o: sum(r["outcome"] == o for r in recs) for o in self.OUTCOMES}}
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".partial"
        with open(tmp, "w") as f:
            json.dump(finite(self.doc), f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, self.path)

    def finish(self):
        self.doc["complete"] = True
        self.doc["meta"]["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.write()


def describe(e):
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}"


# ---------------------------------------------------------------- implementations
_COMPILED = {}


def compiled(name):
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile({"flex": flex_attention, "mask": create_block_mask}[name], dynamic=False)
    return _COMPILED[name]


class Prepared:
    """What timing needs of one implementation: attn(q, k, v), the k/v it takes, a context."""
    def __init__(self, **kw):
        self.sel = self.gating = self.block_mask = None
        self.__dict__.update(kw)


def prepare(impl, S, q, k, v):
    """Build the implementation, run it once (no grad) and return it with its output."""
    G = S["heads_q"] // S["heads_kv"]
    modes = ["mha"] if G == 1 else ["enable_gqa", "expanded"]
    if impl in SDPA_BACKEND:
        backend = getattr(SDPBackend, SDPA_BACKEND[impl], None) if SDPBackend else None
        if backend is None:
            raise NotSupported(f"this torch has no SDPBackend.{SDPA_BACKEND[impl]}")
        ctx = lambda: sdpa_kernel(backend)
        def make(mode):
            kw = {"enable_gqa": True} if mode == "enable_gqa" else {}
            return lambda q_, k_, v_: F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, scale=S["scale"], **kw)
        extra = {}
    else:
        if flex_attention is None:
            raise NotSupported("this torch has no torch.nn.attention.flex_attention")
        ctx = contextlib.nullcontext
        gating = lambda: moba_gating(q[0], k[0], S["block"], S["topk"])
        sel = gating()
        mask_mod = moba_mask_mod(sel, S["block"])
        block_mask = lambda: compiled("mask")(mask_mod, 1, S["heads_q"], S["L"], S["L"], device=q.device,
                                              BLOCK_SIZE=FLEX_BLOCK)
        bm = block_mask()
        def make(mode):
            kw = {"enable_gqa": True} if mode == "enable_gqa" else {}
            return lambda q_, k_, v_: compiled("flex")(q_, k_, v_, block_mask=bm, scale=S["scale"], **kw)
        extra = {"sel": sel, "gating": gating, "block_mask": block_mask, "bm": bm}
    errors = []
    for mode in modes:
        kk, vv = (k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)) if mode == "expanded" else (k, v)
        attn = make(mode)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with ctx(), torch.no_grad():
                    out = attn(q, kk, vv)
                torch.cuda.synchronize()
                return Prepared(attn=attn, ctx=ctx, k=kk, v=vv, out=out, mode=mode, **extra)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # the backend refused this shape, or compilation failed
                notes = "; ".join(" ".join(str(w.message).split())[:200] for w in caught)
                errors.append(f"[{mode}] {describe(e)}" + (f" (warnings: {notes})" if notes else ""))
        del kk, vv
    if impl in SDPA_BACKEND:
        raise NotSupported(" | ".join(errors))
    raise RuntimeError(" | ".join(errors))


def base_record(S, impl, phase, args):
    L, hq, hkv, D, block, topk = (S[x] for x in ("L", "heads_q", "heads_kv", "head_dim", "block", "topk"))
    dense = impl in SDPA_BACKEND
    pairs = dense_pairs(L, hq) if dense else moba_pairs(L, block, topk, hq)
    flops = 4 * D * pairs * {"fwd": 1.0, "bwd": 2.5, "fwdbwd": 3.5}[phase]
    cmd = ["python3", "harness/tools/sdpa_anchors.py", "--seqlen", str(L), "--heads", str(hq), "--kv-heads", str(hkv),
           "--head-dim", str(D), "--block", str(block), "--topk", str(topk), "--dtype", S["dtype"],
           "--impl", impl, "--phase", phase, "--seed", str(S["seed"]), "--max-seconds", f"{args.max_seconds:g}"]
    config = {"seqlens": [L], "heads_q": hq, "heads_kv": hkv, "layout": layout(hq, hkv), "head_dim": D,
              "block": block, "topk": topk, "dtype": S["dtype"], "scale": S["scale"], "seed": S["seed"],
              "total_tokens": L, "zero_sparsity": topk >= -(-L // block)}
    return {"kind": "bench", "config": config, "impl": impl, "dense": dense, "phase": phase,
            "gating": "none" if dense else "separate", "pairs": pairs, "dense_pairs": dense_pairs(L, hq),
            "ideal_speedup": dense_pairs(L, hq) / pairs, "flops": flops,
            "gating_flops": 0 if dense else gating_flops(L, hq, hkv, D, block),
            "dense_impl": None, "speedup_vs_dense": None, "check_outcome": "skipped",
            "outcome": "skipped", "reason": "", "command": shlex.join(cmd)}


def bench_impl(impl, S, inputs, rows, args, phases, bus_id):
    """Check, then time every phase of one implementation on one state; returns the records."""
    q, k, v, dout = inputs
    recs = [base_record(S, impl, ph, args) for ph in phases]
    def all_(outcome, reason, check_outcome, **extra):
        for r in recs:
            r.update(outcome=outcome, reason=reason, check_outcome=check_outcome, **extra)
        return recs
    idle = torch.cuda.memory_allocated()
    try:
        P = prepare(impl, S, q, k, v)
    except NotSupported as e:
        return all_("not supported", str(e)[:2000], "not supported")
    except Exception as e:
        return all_("failed", describe(e)[:2000], "failed")
    try:
        chk = check_rows(P.out[0], q[0], k[0], v[0], rows, S["scale"], S["dtype"], sel=P.sel, block=S["block"])
    except Exception as e:
        return all_("failed", f"forward check: {describe(e)}", "failed", gqa=P.mode)
    del P.out
    check_fields = {key: chk[key] for key in ("check_rows", "check_max_abs_err", "check_bound", "check_ratio")}
    if chk["outcome"] != "passed":
        return all_("skipped", f"not timed: {chk['reason']}", chk["outcome"], gqa=P.mode, **check_fields)
    gating_t = mask_t = None
    for r, phase in zip(recs, phases):
        r.update(check_outcome="passed", gqa=P.mode, **check_fields)
        try:
            if P.gating and gating_t is None:
                gating_t = time_region(P.gating, args.max_seconds, prewarmed=True)
                mask_t = time_region(P.block_mask, args.max_seconds, prewarmed=True)
            if phase == "fwd":
                def step():
                    with torch.no_grad():
                        P.attn(q, P.k, P.v)
            else:
                qr, kr, vr = (t.detach().requires_grad_() for t in (q, P.k, P.v))
                def step():
                    out = P.attn(qr, kr, vr)
                    torch.autograd.grad(out, (qr, kr, vr), dout)
            clock = {}
            torch.cuda.reset_peak_memory_stats()
            with P.ctx():
                t = time_region(step, args.max_seconds, prewarmed=(phase == "fwd"),
                                after_warmup=lambda: clock.update(start=sm_clock_now(bus_id)))
            clock["end"] = sm_clock_now(bus_id)
            r.update(outcome="passed", reason="", timing=t, tflops=r["flops"] / (t["median_ms"] * 1e-3) / 1e12,
                     peak_memory_bytes=max(0, torch.cuda.max_memory_allocated() - idle),
                     sm_clock_start_mhz=clock["start"], sm_clock_end_mhz=clock["end"],
                     throttled=bool(clock["start"] and clock["end"] and clock["end"] < 0.9 * clock["start"]))
            if gating_t:
                r.update(gating_ms=gating_t["median_ms"], gating_timing=gating_t,
                         block_mask_ms=mask_t["median_ms"], block_mask_timing=mask_t)
                try:  # share of (128-query, 128-key) tiles flex skips; per-token selection unions per tile
                    r["flex_block_sparsity_pct"] = float(P.bm.sparsity())
                except Exception:
                    pass
        except Exception as e:  # out of memory or anything else: this phase failed, go on
            r.update(outcome="failed", reason=describe(e))
    return recs


def fill_speedups(recs):
    """speedup_vs_dense: the fastest passed sdpa record of the same phase, over this median."""
    for phase in {r["phase"] for r in recs}:
        dense = [r for r in recs if r["phase"] == phase and r["dense"] and r["outcome"] == "passed"]
        if not dense:
            continue
        best = min(dense, key=lambda r: r["timing"]["median_ms"])
        for r in recs:
            if r["phase"] == phase and r["outcome"] == "passed":
                r["dense_impl"] = best["impl"]
                r["speedup_vs_dense"] = best["timing"]["median_ms"] / r["timing"]["median_ms"]
                if r.get("gating_ms") is not None:  # what a user pays per call: gating + mask + attention
                    r["speedup_vs_dense_with_gating"] = best["timing"]["median_ms"] / (
                        r["timing"]["median_ms"] + r["gating_ms"] + r["block_mask_ms"])


def describe_config(c):
    return (f"{c['layout']} {c['heads_q']}x{c['heads_kv']} {c['dtype']} D{c['head_dim']} "
            f"L={c['seqlens'][0]} Bs={c['block']} k={c['topk']}")


def run(args, argv):
    if not torch.cuda.is_available():
        sys.exit("sdpa_anchors.py: no CUDA device (torch.cuda.is_available() is False)")
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 gating and baseline are plain fp32
    dyn = importlib.import_module("torch._dynamo").config
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(dyn, name):  # one compilation per shape; keep them all
            setattr(dyn, name, max(getattr(dyn, name), 1024))
    for dt in (torch.float64, torch.float32, DTYPES[args.dtype]):  # cuBLAS workspaces: not part of any peak
        torch.ones(8, 8, dtype=dt, device="cuda") @ torch.ones(8, 8, dtype=dt, device="cuda")
    device, bus_id = device_json()
    report = Report(args.out, argv, device)
    states = [(L, hq, hkv, D, bs, kk) for L in args.seqlen for hq in args.heads for hkv in (args.kv_heads or [hq])
              for D in args.head_dim for bs in args.block for kk in args.topk]
    for n, (L, hq, hkv, D, block, topk) in enumerate(states, 1):
        S = {"L": L, "heads_q": hq, "heads_kv": hkv, "head_dim": D, "block": block, "topk": topk,
             "dtype": args.dtype, "scale": args.scale or 1.0 / math.sqrt(D), "seed": args.seed}
        recs, inputs = [], None
        try:
            g = torch.Generator(device="cuda").manual_seed(args.seed)
            draw = lambda h: torch.randn((L, h, D), generator=g, device="cuda", dtype=DTYPES[args.dtype]) \
                .transpose(0, 1).unsqueeze(0).contiguous()                   # [L, H, D] -> [1, H, L, D]
            inputs = (draw(hq), draw(hkv), draw(hkv), draw(hq))              # q, k, v, dout
        except Exception as e:
            recs = [dict(base_record(S, i, ph, args), outcome="failed", reason=f"inputs: {describe(e)}")
                    for i in args.impl for ph in args.phase]
        if inputs is not None:
            rows = sample_rows(L, args.seed)
            for impl in args.impl:
                recs += bench_impl(impl, S, inputs, rows, args, args.phase, bus_id)
                gc.collect()
                torch.cuda.empty_cache()
                fill_speedups(recs)
                report.doc["records"] += recs[-len(args.phase):]
                report.write()
                for r in recs[-len(args.phase):]:
                    t = r.get("timing")
                    what = (f"{t['median_ms']:.3f} ms {r['tflops']:.0f} TFLOP/s" +
                            (f" gating {r['gating_ms']:.3f} ms mask {r['block_mask_ms']:.3f} ms" if r.get("gating_ms") else "")
                            if t else r["reason"][:160])
                    print(f"[{n}/{len(states)}] {describe_config(r['config'])} {r['impl']} {r['phase']}: "
                          f"{r['outcome']} {what}", file=sys.stderr, flush=True)
        else:
            report.doc["records"] += recs
        report.write()
        inputs = None
        gc.collect()
        torch.cuda.empty_cache()
    report.finish()
    print(f"{'config':44} {'impl':17} {'phase':6} {'outcome':13} {'ms':>9} {'gating':>8} {'TFLOP/s':>8} {'vs dense':>8}")
    fmt = lambda x, f: "" if x is None else format(x, f)
    for r in report.doc["records"]:
        print(f"{describe_config(r['config']):44} {r['impl']:17} {r['phase']:6} {r['outcome']:13} "
              f"{fmt(r.get('timing', {}).get('median_ms'), '9.3f'):>9} {fmt(r.get('gating_ms'), '8.3f'):>8} "
              f"{fmt(r.get('tflops'), '8.1f'):>8} {fmt(r.get('speedup_vs_dense'), '8.2f'):>8}")
    bad = [r for r in report.doc["records"] if r["outcome"] in ("incorrect", "failed") or r["check_outcome"] == "incorrect"]
    return 1 if bad else 0


# ---------------------------------------------------------------- self-test (CPU)
def brute_gating(q, k, block, topk):
    hq, L, D = q.shape
    G, n = hq // k.shape[0], -(-L // block)
    kbar = [[k[g, j * block:(j + 1) * block].double().mean(0) for j in range(L // block)] for g in range(k.shape[0])]
    sel = torch.zeros(hq, L, n, dtype=torch.bool)
    for h in range(hq):
        for i in range(L):
            b = i // block
            s = [float(q[h, i].double() @ kbar[h // G][j]) for j in range(b)]
            for j in sorted(range(b), key=lambda j: (-s[j], j))[:min(topk, n) - 1] + [b]:
                sel[h, i, j] = True
    return sel


def self_test():
    torch.manual_seed(1)
    assert [parse_len(x) for x in "8K,1M,17".split(",")] == [8192, 1 << 20, 17]
    for L, hq, hkv, D, block, topk in [(37, 4, 2, 8, 4, 3), (64, 2, 2, 16, 8, 1), (50, 3, 1, 8, 16, 9),
                                       (5, 2, 1, 4, 8, 2), (100, 4, 4, 8, 10, 4), (96, 4, 2, 8, 8, 12)]:
        q = torch.randn(hq, L, D).to(torch.bfloat16)
        k = torch.randn(hkv, L, D).to(torch.bfloat16)
        sel = moba_gating(q, k, block, topk)
        assert sel.equal(brute_gating(q, k, block, topk)), (L, hq, hkv, block, topk)
        assert sel.equal(moba_gating(q, k, block, topk, chunk_elems=1)), "chunking changes the selection"
        mask = moba_mask_mod(sel, block)(0, torch.arange(hq)[:, None, None], torch.arange(L)[None, :, None],
                                         torch.arange(L)[None, None, :])
        assert int(mask.sum()) == moba_pairs(L, block, topk, hq), (L, block, topk)
        if topk >= -(-L // block):
            assert moba_pairs(L, block, topk, hq) == dense_pairs(L, hq)
            assert mask.equal(torch.ones(L, L, dtype=torch.bool).tril().expand(hq, L, L))
        own = torch.arange(L) // block
        assert gating_flops(L, hq, hkv, D, block) == D * hkv * L + 2 * D * hq * int(own.sum())
    # ties go to the lower block index: five identical key blocks, top-3 = own + blocks 0, 1
    k = torch.randn(1, 4, 8).repeat(1, 5, 1).to(torch.bfloat16)
    q = torch.randn(2, 20, 8).to(torch.bfloat16)
    sel = moba_gating(q, k, 4, 3)
    assert sel[:, 16:].equal(torch.tensor([True, True, False, False, True]).expand(2, 4, 5)), sel[:, 16:]
    # the row check: an honest fp32-then-round output passes, a perturbed one fails,
    # and a MoBA output judged against dense attention fails
    L, hq, hkv, D, block, topk = 64, 4, 2, 16, 8, 2
    q, k, v = (torch.randn(h, L, D).to(torch.bfloat16) for h in (hq, hkv, hkv))
    scale = 1.0 / math.sqrt(D)
    sel = moba_gating(q, k, block, topk)
    allowed = moba_mask_mod(sel, block)(0, torch.arange(hq)[:, None, None], torch.arange(L)[None, :, None],
                                        torch.arange(L)[None, None, :])
    kx, vx = (t.float().repeat_interleave(hq // hkv, dim=0) for t in (k, v))
    rows = sample_rows(L, 3)
    assert len(rows) == CHECK_ROWS and rows[0] == 0 and rows[-1] == L - 1
    for sel_, mask_ in ((None, torch.ones(L, L, dtype=torch.bool).tril()), (sel, allowed)):
        out = F.scaled_dot_product_attention(q[None].float(), kx[None], vx[None], attn_mask=mask_.expand(1, hq, L, L),
                                             scale=scale)[0].to(torch.bfloat16)
        res = check_rows(out, q, k, v, rows, scale, "bf16", sel=sel_, block=block)
        assert res["outcome"] == "passed", res
        bad = out.clone()
        bad[1, rows[-1], 3] += 0.25
        assert check_rows(bad, q, k, v, rows, scale, "bf16", sel=sel_, block=block)["outcome"] == "incorrect"
    assert check_rows(out, q, k, v, rows, scale, "bf16")["outcome"] == "incorrect", "MoBA passed as dense"
    nan = out.clone()
    nan[0, rows[2], 0] = float("nan")
    assert check_rows(nan, q, k, v, rows, scale, "bf16", sel=sel, block=block)["outcome"] == "incorrect"
    st = timing_stats([1.0, 2.0, 3.0], 2, "max_time")
    assert st["median_ms"] == 2.0 and abs(st["rel_stddev"] - 0.5) < 1e-12
    print("anchors self-test passed", file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]
    ap.add_argument("--seqlen", type=lambda s: [parse_len(x) for x in s.split(",")], help="lengths, e.g. 8K,32K,128K")
    ap.add_argument("--heads", type=ints, default=[16], help="query heads (comma list)")
    ap.add_argument("--kv-heads", type=ints, help="kv heads (comma list; default: --heads)")
    ap.add_argument("--head-dim", type=ints, default=[128])
    ap.add_argument("--block", type=ints, default=[512], help="MoBA block size (comma list)")
    ap.add_argument("--topk", type=ints, default=[8], help="blocks per query, own included (comma list)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--scale", type=float, default=0.0, help="softmax scale (default 1/sqrt(D))")
    ap.add_argument("--impl", default="all", help="comma list of " + ", ".join(IMPLS) + ", or all")
    ap.add_argument("--phase", default="fwd", help="fwd, fwdbwd (comma list)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=10.0, help="sampling time limit per timed region")
    ap.add_argument("--out", default="anchors.json", help="report path (moba-report)")
    ap.add_argument("--self-test", action="store_true", help="check gating, pairs and the row check on CPU")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    args.impl = list(IMPLS) if args.impl == "all" else args.impl.split(",")
    args.phase = args.phase.split(",")
    problems = [f"unknown impl '{i}'" for i in args.impl if i not in IMPLS]
    problems += [f"unknown phase '{p}' (fwd or fwdbwd)" for p in args.phase if p not in ("fwd", "fwdbwd")]
    problems += ["--seqlen is required"] if not args.seqlen else []
    sizes = args.heads + (args.kv_heads or []) + args.head_dim + args.block + args.topk
    problems += ["sizes, block and topk must be positive"] if min(sizes) <= 0 or args.scale < 0 else []
    problems += [f"{hq} query heads are not a multiple of {hkv} kv heads"
                 for hq in args.heads for hkv in (args.kv_heads or []) if hkv > 0 and hq % hkv]
    if problems:
        print("sdpa_anchors.py: " + "; ".join(problems), file=sys.stderr)
        return 2
    return run(args, sys.argv)


if __name__ == "__main__":
    sys.exit(main())
