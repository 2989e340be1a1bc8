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
