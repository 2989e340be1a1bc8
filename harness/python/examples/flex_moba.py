"""MoBA with FlexAttention, written with the package: the selection from `moba.gating` (the
project's gating kernel, SEMANTICS.md §2) or the one the harness passes, turned into a
mask_mod (same sequence, causal, key block selected by the query), then flex_attention with a
block mask built from it. The block mask depends on q and k, so every call rebuilds it (it is
inside the timed region of `moba bench`, as it would be in a model). Needs torch >= 2.5.

Small problems (total tokens below EAGER_TOKENS) run flex_attention and create_block_mask
eagerly: the quick suite's 180 shapes would otherwise compile 180 times. Larger ones run a
torch.compile'd flex_attention (compiled once per shape) and create_block_mask(_compile=True).

    python -m moba check --impl harness/python/examples/flex_moba.py:flex_moba --suite quick
"""

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import moba

EAGER_TOKENS = 8192
FLEX_BLOCK = 128
_compiled_flex = []


def _flex(eager):
    if eager:
        return flex_attention
    if not _compiled_flex:
        _compiled_flex.append(torch.compile(flex_attention, dynamic=False))
    return _compiled_flex[0]


def _token_maps(seqlens, block, device):
    """Per token: its sequence, and its block within that sequence."""
    lengths = torch.tensor(seqlens, device=device)
    doc = torch.repeat_interleave(torch.arange(len(seqlens), device=device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    local_block = (torch.arange(int(lengths.sum()), device=device) - starts[doc]) // block
    return doc, local_block


def flex_moba(q, k, v, cu_seqlens, block, topk, *, scale=None, selection=None, seqlens=None):
    """(out, lse, selection) of MoBA through flex_attention; GQA by enable_gqa (no KV repeat)."""
    seqlens = seqlens if seqlens is not None else (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    total, hq, _ = q.shape
    if selection is None:
        with torch.no_grad():
            selection = moba.gating(q.detach(), k.detach(), cu_seqlens, block, topk, seqlens=seqlens)
    slots = selection.shape[2]
    n_max = max(-(-n // block) for n in seqlens)
    doc, local_block = _token_maps(seqlens, block, q.device)
    # chosen[h, token, j]: the query token's head h attends block j of its sequence.
    chosen = torch.zeros(hq, total, n_max + 1, dtype=torch.bool, device=q.device)  # column n_max: -1 pads
    idx = torch.where(selection >= 0, selection.long(), torch.full_like(selection.long(), n_max))
    chosen.scatter_(-1, idx.transpose(0, 1).contiguous(), True)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (doc[q_idx] == doc[kv_idx]) & chosen[h, q_idx, local_block[kv_idx]]

    eager = total < EAGER_TOKENS
    # _compile=True: create_block_mask compiles its own mask evaluation (a new mask_mod closure
    # every call, which a torch.compile'd create_block_mask would recompile for).
    block_mask = create_block_mask(mask_mod, 1, hq, total, total, device=q.device, BLOCK_SIZE=FLEX_BLOCK,
                                   _compile=not eager)
    attend = _flex(eager)
    qb, kb, vb = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))  # [1, H, total, D] views
    out, lse = attend(qb, kb, vb, block_mask=block_mask, scale=scale, enable_gqa=hq != k.shape[1],
                      return_lse=True)
    return out[0].transpose(0, 1).contiguous(), lse[0].float(), selection[:, :, :slots]
