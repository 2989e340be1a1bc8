"""PyTorch's own attention as dense external entries, timed in the same process and by the same
timer as the project's kernels (moba bench / moba paper): scaled_dot_product_attention with the
cuDNN and the flash backends, and FlexAttention with a causal block mask. They compute full
causal attention (dense: the speedup baselines) and return no lse. Each follows
moba.user_callable's signature; the packed varlen batch runs as one [B, H, L, D] call when
every sequence has the same length, else one call per sequence.
"""

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # torch < 2.3
    SDPBackend = sdpa_kernel = None
try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # torch < 2.5
    create_block_mask = flex_attention = None

from . import bridge

NAMES = {"sdpa_cudnn": "CUDNN_ATTENTION", "sdpa_flash": "FLASH_ATTENTION"}
FLEX_NAME = "flex_causal"
# Above this many tokens the causal block mask is built by create_block_mask(_compile=True): the
# eager build materializes the whole [total, total] mask first (256 GiB at 512K tokens, which
# made `moba bench` fail at FlashMoBA's setting), the compiled one works block by block. Below
# it the eager build is cheap (64 MiB at 8K) and skips a compilation.
FLEX_EAGER_MASK_TOKENS = 8192


def _batched(q, k, v, seqlens, attend):
    """attend(q, k, v) on [B, H, L, D] views of the packed [total, H, D] tensors."""
    if len(set(seqlens)) == 1:
        b, n = len(seqlens), seqlens[0]
        to_bhld = lambda x: x.view(b, n, x.shape[1], x.shape[2]).transpose(1, 2)
        out = attend(to_bhld(q), to_bhld(k), to_bhld(v))
        return out.transpose(1, 2).reshape(q.shape)
    outs, start = [], 0
    for n in seqlens:
        piece = lambda x: x[start:start + n].transpose(0, 1).unsqueeze(0)
        outs.append(attend(piece(q), piece(k), piece(v))[0].transpose(0, 1))
        start += n
    return torch.cat(outs, dim=0)


def sdpa_callable(name):
    """fn running F.scaled_dot_product_attention(is_causal=True) inside sdpa_kernel(backend).
    GQA: enable_gqa=True, or k/v repeated inside the call where the backend refuses it (what a
    user would have to run; the first refusal is remembered)."""
    if sdpa_kernel is None or getattr(SDPBackend, NAMES[name], None) is None:
        raise RuntimeError(f"{name} needs torch.nn.attention.SDPBackend.{NAMES[name]} (torch >= 2.3); "
                           f"this is torch {torch.__version__}")
    backend = getattr(SDPBackend, NAMES[name])
    refuses_gqa = {}

    def fn(q, k, v, cu_seqlens, block, topk, *, scale=None, seqlens=None):
        seqlens = seqlens if seqlens is not None else (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        group = q.shape[1] // k.shape[1]

        def attend(qb, kb, vb):
            with sdpa_kernel(backend):
                if group > 1 and not refuses_gqa.get(qb.dtype, False):
                    try:
                        return F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, scale=scale,
                                                              enable_gqa=True)
                    except RuntimeError:
                        refuses_gqa[qb.dtype] = True
                if group > 1:
                    kb, vb = kb.repeat_interleave(group, dim=1), vb.repeat_interleave(group, dim=1)
                return F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, scale=scale)
        return _batched(q, k, v, seqlens, attend)

    fn.__name__ = name
    return fn


def flex_causal_callable():
    """FlexAttention (torch.compile'd) with a causal block mask, documents kept apart for varlen
    (the mask is built once per set of lengths: it depends on the shape only; compiled above
    FLEX_EAGER_MASK_TOKENS)."""
    if flex_attention is None:
        raise RuntimeError(f"FlexAttention needs torch >= 2.5; this is torch {torch.__version__}")
    compiled = torch.compile(flex_attention, dynamic=False)
    masks = {}

    def fn(q, k, v, cu_seqlens, block, topk, *, scale=None, seqlens=None):
        seqlens = tuple(seqlens if seqlens is not None else (cu_seqlens[1:] - cu_seqlens[:-1]).tolist())
        total = q.shape[0]
        if seqlens not in masks:
            doc = torch.repeat_interleave(torch.arange(len(seqlens), device=q.device),
                                          torch.tensor(seqlens, device=q.device))

            def causal_in_document(b, h, q_idx, kv_idx):
                return (kv_idx <= q_idx) & (doc[q_idx] == doc[kv_idx])
            masks[seqlens] = create_block_mask(causal_in_document, None, None, total, total, device=q.device,
                                               _compile=total > FLEX_EAGER_MASK_TOKENS)
        qb, kb, vb = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        out = compiled(qb, kb, vb, block_mask=masks[seqlens], scale=scale, enable_gqa=q.shape[1] != k.shape[1])
        return out[0].transpose(0, 1)

    fn.__name__ = FLEX_NAME
    return fn


def register_torch_baselines(names=("sdpa_cudnn", "sdpa_flash", FLEX_NAME)):
    """Registers the named baselines that this torch has; returns {name: None or why not}."""
    status = {}
    for name in names:
        try:
            fn = flex_causal_callable() if name == FLEX_NAME else sdpa_callable(name)
        except (RuntimeError, KeyError) as e:
            status[name] = str(e)
            continue
        technique = ("FlexAttention (torch.compile) with a causal block mask: full causal attention"
                     if name == FLEX_NAME else
                     f"torch scaled_dot_product_attention(is_causal=True), SDPBackend.{NAMES[name]}: full causal "
                     "attention")
        bridge.register(fn, name, dense=True, gating=False, backward=True, lse=False, technique=technique,
                        cli=f"--torch {name} --impl {name}")
        status[name] = None
    return status
