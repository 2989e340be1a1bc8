"""moba: the MoBA harness from Python (harness/python/README section of the top README).

    moba.attention(q, k, v, cu_seqlens, block, topk, impl="auto", scale=None)  # torch custom op
    moba.gating(q, k, cu_seqlens, block, topk)                                  # the selection
    moba.check(fn, suite="quick", out="r.json")      # your MoBA against the float64 truth
    moba.bench([fn], impl=("wgmma_moba",), torch=("sdpa_cudnn",))               # timed together
    python -m moba check --impl package.module:function --suite quick

fn's signature is moba.user_callable's docstring.
"""

from ._native import native
from .api import bench, check, implementations, paper, register
from .ops import OP_AVAILABLE, OP_UNAVAILABLE_REASON, attention, gating, kernel_callable
from .user_callable import CallableError

__all__ = ["attention", "gating", "check", "bench", "paper", "register", "implementations", "kernel_callable",
           "native", "CallableError", "OP_AVAILABLE", "OP_UNAVAILABLE_REASON"]
