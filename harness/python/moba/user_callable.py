"""The signature a MoBA implementation brings to `moba.check` / `moba.bench`, and the checks
made on what it returns (plain tensor logic: tested on the CPU).

    fn(q, k, v, cu_seqlens, block, topk, *, scale=None, selection=None)
        q           [total, Hq, D]  bf16/fp16 (fp32 if declared), CUDA, contiguous
        k, v        [total, Hkv, D] (Hq % Hkv == 0: GQA/MQA without repeating KV)
        cu_seqlens  [B + 1] int32, prefix sums of the packed sequences' lengths
        block, topk ints: MoBA block size, blocks per query (own block included)
        scale       softmax scale (1/sqrt(D) when None); passed when fn accepts it
        seqlens     the lengths as a host list (saves reading cu_seqlens back, a device sync);
                    passed when fn accepts it
        selection   [total, Hq, min(topk, max_blocks)] int32, ascending, -1 padded: the blocks
                    to attend (the harness's float64 gating). Passed only when fn accepts a
                    `selection` keyword; fn must then use it instead of its own gating.
    returns out, or (out, lse), or (out, lse, selection):
        out         [total, Hq, D] in q's dtype
        lse         [Hq, total] float32 natural log of the scaled scores' sum of exps, or None
        selection   fn's own gating in the layout above (the width may be topk, padded -1)

Gradients come through autograd (torch.autograd.grad of out with respect to q, k, v).
"""

import inspect

import torch


class CallableError(Exception):
    """What a user callable did wrong; the harness records it as a failed record with this text."""


class CallableSpec:
    """fn and what its signature accepts."""

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"moba: {fn!r} is not callable")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        self.accepts_selection = "selection" in params or var_kw
        self.accepts_scale = "scale" in params or var_kw
        self.accepts_seqlens = "seqlens" in params or var_kw
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        has_var_pos = any(p.kind == p.VAR_POSITIONAL for p in params.values())
        if params and not has_var_pos and len(positional) < 6:
            raise TypeError(
                f"moba: {self.name} takes {len(positional)} positional arguments; the signature is "
                "fn(q, k, v, cu_seqlens, block, topk, *, scale=None, selection=None)")


class Result:
    def __init__(self, out, lse=None, selection=None):
        self.out, self.lse, self.selection = out, lse, selection


def call(spec, q, k, v, cu_seqlens, block, topk, scale, selection=None, seqlens=None):
    """Calls fn as documented; its exceptions propagate (the caller records them)."""
    kwargs = {}
    if spec.accepts_scale:
        kwargs["scale"] = scale
    if seqlens is not None and spec.accepts_seqlens:
        kwargs["seqlens"] = list(seqlens)
    if selection is not None and spec.accepts_selection:
        kwargs["selection"] = selection
    return spec.fn(q, k, v, cu_seqlens, block, topk, **kwargs)


def normalize(result, q, heads_kv, sel_slots, name="fn"):
    """Result from what fn returned, or CallableError naming what is wrong with it."""
    if isinstance(result, torch.Tensor):
        parts = (result,)
    elif isinstance(result, (tuple, list)) and 1 <= len(result) <= 3:
        parts = tuple(result)
    else:
        raise CallableError(f"{name} returned {type(result).__name__}; expected out, (out, lse) or (out, lse, selection)")
    out = parts[0]
    lse = parts[1] if len(parts) > 1 else None
    sel = parts[2] if len(parts) > 2 else None
    total, hq, d = q.shape
    if not isinstance(out, torch.Tensor):
        raise CallableError(f"{name}: out is {type(out).__name__}, not a tensor")
    if tuple(out.shape) != (total, hq, d):
        raise CallableError(f"{name}: out has shape {tuple(out.shape)}, expected {(total, hq, d)} ([total, Hq, D])")
    if out.dtype != q.dtype:
        raise CallableError(f"{name}: out has dtype {out.dtype}, expected q's {q.dtype}")
    if out.device != q.device:
        raise CallableError(f"{name}: out is on {out.device}, expected {q.device}")
    if lse is not None:
        if not isinstance(lse, torch.Tensor) or tuple(lse.shape) != (hq, total):
            shape = tuple(lse.shape) if isinstance(lse, torch.Tensor) else type(lse).__name__
            raise CallableError(f"{name}: lse has shape {shape}, expected {(hq, total)} ([Hq, total], float32)")
        if not lse.dtype.is_floating_point:
            raise CallableError(f"{name}: lse has dtype {lse.dtype}, expected float32")
    if sel is not None:
        sel = selection_slots(sel, total, hq, sel_slots, name)
    return Result(out, lse, sel)


def selection_slots(sel, total, hq, sel_slots, name="fn"):
    """sel as [total, Hq, sel_slots] int32; a wider one (e.g. topk columns) must be -1 beyond."""
    if not isinstance(sel, torch.Tensor) or sel.dim() != 3 or tuple(sel.shape[:2]) != (total, hq) \
            or sel.shape[2] < sel_slots or sel.dtype.is_floating_point:
        shape = tuple(sel.shape) if isinstance(sel, torch.Tensor) else type(sel).__name__
        raise CallableError(f"{name}: selection has shape {shape}, expected integer [{total}, {hq}, >= {sel_slots}]")
    if sel.shape[2] > sel_slots:
        extra = sel[:, :, sel_slots:]
        if bool((extra != -1).any()):
            raise CallableError(f"{name}: selection has {sel.shape[2]} columns; those beyond min(topk, blocks) = "
                                f"{sel_slots} must be -1")
        sel = sel[:, :, :sel_slots]
    return sel.to(torch.int32)
