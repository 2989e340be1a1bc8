"""Zero-copy torch views of the harness's device buffers (raw pointers from the C++ side),
through DLPack capsules made by _moba (no numpy needed; bfloat16 included). The buffers stay
owned by the harness, which frees them after the call: nothing may keep a view beyond it."""

import torch

from ._native import native
from .layout import TORCH_DTYPES

_DLPACK_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.int32: "int32",
                 torch.uint8: "uint8"}


def view(ptr, shape, dtype, cuda=True):
    """A torch tensor over `ptr` with that shape and dtype (no copy); None for a null pointer."""
    if not ptr:
        return None
    device = torch.cuda.current_device() if cuda else 0
    t = torch.from_dlpack(native.dlpack_view(ptr, list(shape), _DLPACK_NAMES[dtype], cuda, device))
    assert t.data_ptr() == ptr or t.numel() == 0, "zero-copy view expected"
    return t


def problem_views(problem, ptrs):
    """The named tensors of one gating/attention call, as views (absent ones None)."""
    dtype = TORCH_DTYPES[problem.dtype]
    total, hq, hkv, d = problem.total_tokens, problem.heads_q, problem.heads_kv, problem.head_dim
    shapes = {"cu_seqlens": ((len(problem.seqlens) + 1,), torch.int32),
              "q": ((total, hq, d), dtype), "k": ((total, hkv, d), dtype), "v": ((total, hkv, d), dtype),
              "sel": ((total, hq, problem.sel_slots), torch.int32),
              "out": ((total, hq, d), dtype), "lse": ((hq, total), torch.float32),
              "dout": ((total, hq, d), dtype), "dq": ((total, hq, d), dtype),
              "dk": ((total, hkv, d), dtype), "dv": ((total, hkv, d), dtype)}
    return {name: view(ptrs.get(name, 0), *shapes[name]) for name in shapes}


def decode_views(problem, ptrs):
    """The tensors of one decode step (DecodeArgs) as views; `problem` is the caches' (seqlens:
    the cache lengths). A paged pool's page count is read from the block table (one device
    sync; the harness's paged caches are only in checks, never in the study's timings)."""
    dtype = TORCH_DTYPES[problem.dtype]
    batch, hq, hkv, d = len(problem.seqlens), problem.heads_q, problem.heads_kv, problem.head_dim
    total_q = ptrs["total_q"]
    t = {"cu_q": view(ptrs["cu_q"], (batch + 1,), torch.int32), "cu_k": view(ptrs["cu_k"], (batch + 1,), torch.int32),
         "q": view(ptrs["q"], (total_q, hq, d), dtype), "out": view(ptrs["out"], (total_q, hq, d), dtype),
         "lse": view(ptrs["lse"], (hq, total_q), torch.float32),
         "sel": view(ptrs["sel"], (total_q, hq, problem.sel_slots), torch.int32),
         "block_table": view(ptrs["block_table"], (batch, ptrs["table_width"]), torch.int32)}
    rows = problem.total_tokens
    if t["block_table"] is not None:
        rows = (int(t["block_table"].max()) + 1) * ptrs["page_size"]
    t["k"] = view(ptrs["k"], (rows, hkv, d), dtype)
    t["v"] = view(ptrs["v"], (rows, hkv, d), dtype)
    return t
