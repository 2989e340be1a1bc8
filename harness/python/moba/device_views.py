"""Zero-copy torch views of the harness's device buffers (raw pointers from the C++ side),
through __cuda_array_interface__: the buffers stay owned by the harness, which frees them
after the call; nothing here may keep a view beyond it."""

import torch

from .layout import TORCH_DTYPES

# Element types __cuda_array_interface__ knows; bf16 and fp16 travel as int16 and are viewed
# back (the interface has no bfloat16).
_STORAGE = {torch.bfloat16: ("<i2", torch.int16), torch.float16: ("<i2", torch.int16),
            torch.float32: ("<f4", torch.float32), torch.int32: ("<i4", torch.int32)}


class _Buffer:
    def __init__(self, ptr, shape, typestr):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, False),
                                         "version": 2, "strides": None}


def view(ptr, shape, dtype):
    """A torch tensor over `ptr` (device memory) with that shape and dtype; None for a null pointer."""
    if not ptr:
        return None
    typestr, storage = _STORAGE[dtype]
    if any(n == 0 for n in shape):
        return torch.empty(shape, dtype=dtype, device="cuda")
    t = torch.as_tensor(_Buffer(ptr, shape, typestr), device="cuda")
    assert t.dtype == storage and t.data_ptr() == ptr, "zero-copy view expected"
    return t.view(dtype) if storage != dtype else t


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
