"""PyTorch's scaled_dot_product_attention as dense decode steps (decode-only registry entries),
so `python -m moba decode-study` times them beside the project's decode kernels in one process
and `python -m moba check --suite decode --impl sdpa_flash_decode` judges them first.

A decode step here is one new token per request (q_len 1) attending its whole cache. For GQA and
MQA the query heads of a kv group become the rows of one [G, D] query against that kv head's
cache (as FlashAttention's own decode path does), so no backend needs enable_gqa and no key is
repeated: the dense decode reads every cached key once per kv group, the bandwidth floor a MoBA
step is measured against. A chunk of new tokens (q_len > 1) needs the causal mask aligned to the
cache's end, which the fast backends do not take with grouped heads: those shapes are refused
(decode_max_q_len 1) rather than run on a slow path.

Paged caches are gathered into packed ones first (what a PyTorch user would have to do); the
study's caches are packed, so its timings hold no gather. The time of a call includes its Python
dispatch (tens of microseconds), which matters only for the smallest steps.
"""

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # torch < 2.3
    SDPBackend = sdpa_kernel = None

from . import bridge

BACKENDS = {"sdpa_flash_decode": "FLASH_ATTENTION", "sdpa_cudnn_decode": "CUDNN_ATTENTION",
            "sdpa_efficient_decode": "EFFICIENT_ATTENTION"}
# The study's default baselines. The memory-efficient backend passes the decode suite, but on the
# H200 (torch 2.11, tree db188b2) it hit an illegal memory access at a 1M-token cache with 32 kv
# heads of 128 (2^32 elements per cache tensor), which ends every later CUDA call of the process:
# it is timed only when asked for (--torch), and refuses caches of 2^31 elements or more.
DEFAULT = ("sdpa_flash_decode", "sdpa_cudnn_decode")
EFFICIENT_MAX_ELEMENTS = 2**31


def packed_caches(k, v, k_lens, block_table, page_size):
    """k, v as packed [sum(k_lens), Hkv, D] caches: the pools' rows gathered through the block
    table (row block_table[r, j // page_size] * page_size + j % page_size holds token j of
    request r), or k, v themselves when there is no table."""
    if block_table is None:
        return k, v
    rows = []
    for r, n in enumerate(k_lens):
        j = torch.arange(n, device=k.device)
        rows.append(block_table[r, j // page_size].long() * page_size + j % page_size)
    index = torch.cat(rows)
    return k.index_select(0, index), v.index_select(0, index)


def grouped_decode(q, k, v, k_lens, scale, attend):
    """One new token per request: q [B, Hq, D], packed caches k, v [sum(k_lens), Hkv, D] ->
    out [B, Hq, D]. attend(qb, kb, vb, scale) is unmasked attention on [N, Hkv, rows, D] queries
    and [N, Hkv, keys, D] keys; each kv group's heads are its query rows."""
    b, hq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    if len(set(k_lens)) == 1:  # one call for the whole batch
        n = k_lens[0]
        as_heads = lambda x: x.view(b, n, hkv, d).transpose(1, 2)
        out = attend(q.view(b, hkv, group, d), as_heads(k), as_heads(v), scale)
        return out.reshape(b, hq, d)
    outs, start = [], 0
    for r, n in enumerate(k_lens):
        piece = lambda x: x[start:start + n].transpose(0, 1).unsqueeze(0)
        outs.append(attend(q[r].view(1, hkv, group, d), piece(k), piece(v), scale).reshape(hq, d))
        start += n
    return torch.stack(outs)


def sdpa_decode_callable(name):
    """fn(q, k, v, k_lens, q_lens, scale, block_table, page_size) -> out, running
    F.scaled_dot_product_attention inside sdpa_kernel(backend)."""
    if sdpa_kernel is None or getattr(SDPBackend, BACKENDS[name], None) is None:
        raise RuntimeError(f"{name} needs torch.nn.attention.SDPBackend.{BACKENDS[name]} (torch >= 2.3); "
                           f"this is torch {torch.__version__}")
    backend = getattr(SDPBackend, BACKENDS[name])

    def attend(qb, kb, vb, scale):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(qb, kb, vb, scale=scale)

    def fn(q, k, v, k_lens, q_lens, scale, block_table=None, page_size=0):
        if any(n != 1 for n in q_lens):
            raise ValueError(f"{name} takes one new token per request, not q_lens {q_lens}")
        cache_elements = sum(k_lens) * k.shape[1] * k.shape[2]
        if name == "sdpa_efficient_decode" and cache_elements >= EFFICIENT_MAX_ELEMENTS:
            raise ValueError(f"{name} is not run on caches of {cache_elements} >= 2^31 elements: PyTorch's "
                             "memory-efficient kernel hit an illegal memory access at 2^32 (moba.torch_decode)")
        k, v = packed_caches(k, v, k_lens, block_table, page_size)
        return grouped_decode(q, k, v, k_lens, scale, attend)

    fn.__name__ = name
    return fn


def register_torch_decode(names=DEFAULT):
    """Registers the named SDPA decode entries that this torch has; returns {name: None or why not}."""
    status = {}
    for name in names:
        try:
            fn = sdpa_decode_callable(name)
        except (RuntimeError, KeyError) as e:
            status[name] = str(e) if not isinstance(e, KeyError) else f"unknown SDPA decode '{name}'"
            continue
        technique = (f"decode only: torch scaled_dot_product_attention, SDPBackend.{BACKENDS[name]}, one new token "
                     "per request, each kv group's heads as the query rows of one call (dense decode)")
        bridge.register_decode(fn, name, technique=technique, max_q_len=1, cli=f"--impl {name}")
        status[name] = None
    return status
