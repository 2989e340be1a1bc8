"""Tensor layouts of the harness (core/tensors.hpp, ../shared/SPEC.md §1) on the torch side:
dtype names, the Problem a set of tensors describes, and validation that names the bad value
before any work is done."""

import torch

from ._native import native

# Harness dtype name <-> torch dtype.
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


def dtype_name(dtype):
    if dtype not in DTYPE_NAMES:
        raise TypeError(f"moba: dtype {dtype} is not supported (bfloat16, float16 or float32)")
    return DTYPE_NAMES[dtype]


def seqlens_from_cu(cu_seqlens):
    """[B+1] prefix sums -> list of lengths (a host copy: one device sync for a CUDA tensor)."""
    cu = cu_seqlens.detach().to("cpu", torch.int64).tolist()
    return [b - a for a, b in zip(cu[:-1], cu[1:])]


def check_tensors(q, k, v, cu_seqlens, block, topk, scale=None, need_cuda=True):
    """Checks shapes, dtypes, devices and layout without reading any data (so it runs while
    torch.compile traces); raises ValueError/TypeError naming the bad value."""
    for name, t in (("q", q), ("k", k), ("v", v), ("cu_seqlens", cu_seqlens)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"moba: {name} must be a torch.Tensor, got {type(t).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"moba: {name} must be [total, heads, head_dim], got shape {tuple(t.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"moba: k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"moba: q {tuple(q.shape)} and k {tuple(k.shape)} must agree on total tokens and head_dim")
    if k.shape[1] < 1 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"moba: query heads {q.shape[1]} must be a multiple of kv heads {k.shape[1]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"moba: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    dtype_name(q.dtype)
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2:
        raise ValueError(f"moba: cu_seqlens must be int32 [batch + 1], got {cu_seqlens.dtype} {tuple(cu_seqlens.shape)}")
    devices = {t.device for t in (q, k, v, cu_seqlens)}
    if len(devices) != 1:
        raise ValueError(f"moba: q, k, v, cu_seqlens must be on one device, got {sorted(map(str, devices))}")
    if need_cuda and q.device.type != "cuda":
        raise ValueError(f"moba: the kernels need CUDA tensors, got device {q.device}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not t.is_contiguous():
            raise ValueError(f"moba: {name} must be contiguous (layout [total, heads, head_dim])")
    if isinstance(block, bool) or not isinstance(block, int) or block <= 0:
        raise ValueError(f"moba: block must be a positive int, got {block!r}")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk <= 0:
        raise ValueError(f"moba: topk must be a positive int, got {topk!r}")
    if scale is not None and not (scale > 0):
        raise ValueError(f"moba: scale must be positive, got {scale!r}")


def make_problem(q, k, cu_seqlens, block, topk, scale=None, seqlens=None):
    """The harness Problem of these tensors. The lengths are `seqlens` when given (a host list
    the caller vouches matches cu_seqlens), else read from cu_seqlens (a device sync for CUDA)."""
    if seqlens is not None:
        seqlens = [int(n) for n in seqlens]
        if len(seqlens) + 1 != cu_seqlens.shape[0] or any(n < 0 for n in seqlens) or sum(seqlens) != q.shape[0]:
            raise ValueError(f"moba: seqlens {seqlens} must be {cu_seqlens.shape[0] - 1} lengths >= 0 summing to "
                             f"total tokens {q.shape[0]}")
    else:
        seqlens = seqlens_from_cu(cu_seqlens)
        if int(cu_seqlens[0]) != 0 or any(n < 0 for n in seqlens) or sum(seqlens) != q.shape[0]:
            raise ValueError(
                f"moba: cu_seqlens must start at 0, never decrease and end at total tokens {q.shape[0]}, "
                f"got {cu_seqlens.tolist()}")
    return native.Problem(seqlens, q.shape[1], k.shape[1], q.shape[2], block, topk, dtype_name(q.dtype),
                          float(scale or 0.0))
