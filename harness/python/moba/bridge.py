"""Python callables as external registry entries: `register` adds an entry whose gating,
forward and backward the C++ check and bench engines call (harness/python/src/
external_entries.cpp), `register_decode` a dense decode step (moba.torch_decode), and
`_dispatch` is what they reach. The harness owns every buffer; the
callable sees zero-copy views of them, on the stream the harness times.

Forward runs with autograd recording when the entry has a backward, and keeps that graph for
the backward that follows (the engines always call forward first): so `moba bench --phase bwd`
times the callable's backward alone, and `--phase fwd` times a training-mode forward. Register
with backward=False to time inference.
"""

import contextlib
import shlex

import torch

from ._native import native
from .device_views import decode_views, problem_views
from .user_callable import CallableError, CallableSpec, call, normalize


class _Entry:
    def __init__(self, spec, gating, backward, writes_lse):
        self.spec, self.gating, self.backward, self.writes_lse = spec, gating, backward, writes_lse
        self.graph = None  # (key, out, (q, k, v) leaves) of the last forward with autograd


_entries = {}

# The command line that reruns an entry registered here (a record's `command`): `python -m moba`,
# with the --impl item that registers the callable again and the flags of its options.
PYTHON_TOOL = "python3 -m moba"


def cli_impl_flags(impl_item, *, block_means="exact", gating=True, backward=True, lse=True, extra=""):
    """'--impl path/f.py:fn --block-means rounded ...': the flags of `python -m moba` that
    register an entry as these options do."""
    flags = [extra] if extra else []
    flags += ["--impl", shlex.quote(impl_item)]
    if block_means != "exact":
        flags += ["--block-means", block_means]
    flags += [flag for flag, off in (("--no-gating", not gating), ("--no-backward", not backward),
                                     ("--no-lse", not lse)) if off]
    return " ".join(flags)


def _importable_item(fn):
    """'package.module:function' when fn can be imported again by that name, else None (a
    function of __main__ or of a file loaded by path has no such name)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or module.startswith("moba_user_") or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def register(fn, name=None, *, dense=False, gating=True, backward=True, lse=True, block_means="exact",
             dtypes=("bf16", "fp16"), max_head_dim=256, technique=None, like="", cli=None):
    """Adds fn (moba.user_callable's signature) to the registry as `name` (default: its
    __name__) and returns the name. dense: computes full causal attention whatever the
    selection (a speedup baseline; checked at zero sparsity only). gating: fn returns its own
    selection. backward: gradients through autograd. lse: fn returns lse. block_means: 'exact' or
    'rounded' (../shared/SPEC.md §2.7). dtypes, max_head_dim: what it implements (other shapes
    are recorded as not supported), or like='<built-in name>': what that entry implements.
    cli: the --impl flags of `python -m moba` that register it again, for its records' commands
    (default: module:function when fn is importable by that name)."""
    spec = CallableSpec(fn, name)
    if cli is None and _importable_item(fn):
        cli = cli_impl_flags(_importable_item(fn), block_means=block_means, gating=gating, backward=backward,
                             lse=lse)
    module = getattr(fn, "__module__", None) or "?"
    technique = technique or f"Python callable {module}.{getattr(fn, '__qualname__', spec.name)}"
    native.register_external(spec.name, technique, list(dtypes), int(max_head_dim), bool(dense),
                             bool(gating) and not dense, bool(backward), bool(lse), block_means, like,
                             PYTHON_TOOL if cli else "", cli or "")
    _entries[spec.name] = _Entry(spec, bool(gating) and not dense, bool(backward), bool(lse))
    return spec.name


def register_decode(fn, name, *, technique, max_q_len=0, dtypes=("bf16", "fp16"), max_head_dim=256, cli=None):
    """Adds a decode-only dense entry: fn(q, k, v, k_lens, q_lens, scale, block_table, page_size)
    returns out [total_q, Hq, D] for new tokens q [total_q, Hq, D] over packed caches k, v
    [total_k, Hkv, D] (or pools with a block table). It attends every cached key (checked at
    zero sparsity, a baseline in `moba decode-study`) and returns no lse. max_q_len: the most new
    tokens per request it takes (0: any); larger steps are recorded as not supported."""
    spec = CallableSpec(fn, name)
    native.register_external(spec.name, technique, list(dtypes), int(max_head_dim), True, False, False, False,
                             "exact", "", PYTHON_TOOL if cli else "", cli or "", has_forward=False, has_decode=True,
                             decode_max_q_len=int(max_q_len))
    _entries[spec.name] = _Entry(spec, False, False, False)
    return spec.name


def forget_graphs():
    """Drops the autograd graphs kept for a backward (their views point into freed buffers once
    a command returns)."""
    for entry in _entries.values():
        entry.graph = None


def _key(problem, ptrs):
    return (problem.flags(), ptrs["q"], ptrs["k"], ptrs["v"], ptrs["sel"], ptrs["out"])


def _call(entry, problem, t, selection):
    return call(entry.spec, t["q"], t["k"], t["v"], t["cu_seqlens"], problem.block, problem.topk, problem.scale,
                selection, problem.seqlens)


def _normalized(entry, problem, result, q):
    return normalize(result, q, problem.heads_kv, problem.sel_slots, entry.spec.name)


def _gating(entry, problem, t):
    # The harness's gating call has no v (a selection depends on q and k only): fn gets zeros.
    # It is a whole call of fn, attention included, which `moba bench` times as the gating.
    t = dict(t, v=torch.zeros_like(t["k"]))
    with torch.no_grad():
        r = _normalized(entry, problem, _call(entry, problem, t, None), t["q"])
    if r.selection is None:
        raise CallableError(f"{entry.spec.name} returned no selection; register it with gating=False "
                            "(--no-gating) if it has no gating of its own")
    t["sel"].copy_(r.selection)


def _forward(entry, problem, t, key):
    entry.graph = None
    if entry.backward:
        leaves = tuple(t[n].detach().requires_grad_() for n in ("q", "k", "v"))
        with torch.enable_grad():
            result = call(entry.spec, *leaves, t["cu_seqlens"], problem.block, problem.topk, problem.scale, t["sel"],
                          problem.seqlens)
        r = _normalized(entry, problem, result, t["q"])
        entry.graph = (key, r.out, leaves)
    else:
        with torch.no_grad():
            r = _normalized(entry, problem, _call(entry, problem, t, t["sel"]), t["q"])
    t["out"].copy_(r.out)
    if entry.writes_lse:
        if r.lse is None:
            raise CallableError(f"{entry.spec.name} returned no lse; register it with lse=False (--no-lse)")
        t["lse"].copy_(r.lse)


def _backward(entry, problem, t, key):
    if entry.graph is None or entry.graph[0] != key:
        _forward(entry, problem, t, key)
    _, out, leaves = entry.graph
    if not out.requires_grad:
        raise CallableError(f"{entry.spec.name}: out does not require grad, so autograd cannot differentiate it "
                            "(register it with backward=False)")
    grads = torch.autograd.grad(out, leaves, t["dout"], retain_graph=True, allow_unused=True)
    for g, name in zip(grads, ("dq", "dk", "dv")):
        if g is None:
            t[name].zero_()
        else:
            t[name].copy_(g)


def _decode(entry, problem, ptrs):
    t = decode_views(problem, ptrs)
    k_lens, max_q_len = problem.seqlens, ptrs["max_q_len"]
    # Equal q_lens are known without reading cu_q back (a device sync inside a timed step).
    if ptrs["total_q"] == len(k_lens) * max_q_len:
        q_lens = [max_q_len] * len(k_lens)
    else:
        cu = t["cu_q"].tolist()
        q_lens = [b - a for a, b in zip(cu[:-1], cu[1:])]
    with torch.no_grad():
        out = entry.spec.fn(t["q"], t["k"], t["v"], k_lens, q_lens, problem.scale, t["block_table"], ptrs["page_size"])
    if tuple(out.shape) != tuple(t["out"].shape) or out.dtype != t["out"].dtype:
        raise CallableError(f"{entry.spec.name} returned out {tuple(out.shape)} {out.dtype}, expected "
                            f"{tuple(t['out'].shape)} {t['out'].dtype}")
    t["out"].copy_(out)


def _dispatch(name, what, problem, ptrs, stream):
    entry = _entries.get(name)
    if entry is None:
        raise CallableError(f"no Python callable is registered as '{name}' in this process")
    if what == "release":
        # Before and after `moba bench` measures this entry's device memory: what the entry keeps
        # (its autograd graph) and what PyTorch's allocator caches go back to the driver, so the
        # drop in free memory the bench sees is this run's own.
        entry.graph = None
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        return
    stream_ctx = torch.cuda.stream(torch.cuda.ExternalStream(stream)) if stream else contextlib.nullcontext()
    with stream_ctx:
        if what == "decode":
            _decode(entry, problem, ptrs)
            return
        t = problem_views(problem, ptrs)
        if what == "gating":
            _gating(entry, problem, t)
        elif what == "forward":
            _forward(entry, problem, t, _key(problem, ptrs))
        elif what == "backward":
            _backward(entry, problem, t, _key(problem, ptrs))
        else:
            raise CallableError(f"unknown call '{what}'")


native.set_dispatcher(_dispatch)
