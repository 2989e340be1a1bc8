"""A small MoBA in plain PyTorch, following SEMANTICS.md §2-3 literally: block means of full
blocks in fp32 (exact, or rounded to the input dtype as the official code does), unscaled
scores, own block forced, future blocks excluded, the top-k by a stable sort (ties to the lower
block index), then causal softmax attention over the selected blocks in fp32. Memory is
O(Hq · L²) per sequence: a worked example for `moba check` / `moba bench`, not a kernel.

    python -m moba check --impl harness/python/examples/plain_moba.py:plain_moba --suite quick
"""

import torch


def _sequence_gating(q, k, block, topk, slots, rounded):
    """q [L, Hq, D], k [L, Hkv, D] -> selection [L, Hq, slots] int32 (ascending, -1 pad)."""
    length, hq, d = q.shape
    hkv = k.shape[1]
    n = -(-length // block)
    full = length // block
    kbar = torch.zeros(hkv, n, d, dtype=torch.float32, device=q.device)  # the partial block: own only
    if full:
        kbar[:, :full] = k[:full * block].float().view(full, block, hkv, d).mean(dim=1).transpose(0, 1)
        if rounded:
            kbar = kbar.to(q.dtype).float()
    group = hq // hkv
    qh = q.float().transpose(0, 1).reshape(hkv, group * length, d)        # [Hkv, G·L, D]
    s = torch.bmm(qh, kbar.transpose(1, 2)).view(hq, length, n)           # [Hq, L, n], unscaled
    own = torch.arange(length, device=q.device) // block
    j = torch.arange(n, device=q.device)
    s = torch.where(j[None, None, :] < own[None, :, None], s, torch.full_like(s, -float("inf")))
    s = torch.where(j[None, None, :] == own[None, :, None], torch.full_like(s, float("inf")), s)
    kk = min(topk, n)
    order = torch.sort(-s, dim=-1, stable=True).indices[..., :kk]         # ties: lower index first
    picked = torch.gather(s, -1, order)
    blocks = torch.where(picked > -float("inf"), order, torch.full_like(order, n))  # n: dropped
    blocks = torch.sort(blocks, dim=-1).values
    blocks = torch.where(blocks == n, torch.full_like(blocks, -1), blocks)
    sel = torch.full((hq, length, slots), -1, dtype=torch.int32, device=q.device)
    sel[:, :, :kk] = blocks.to(torch.int32)
    return sel.transpose(0, 1)


def _sequence_attention(q, k, v, sel, block, scale):
    """q [L, Hq, D], k, v [L, Hkv, D], sel [L, Hq, slots] -> out [L, Hq, D], lse [Hq, L]."""
    length, hq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    n = -(-length // block)
    chosen = torch.zeros(hq, length, n + 1, dtype=torch.bool, device=q.device)  # column n: the -1 pads
    idx = torch.where(sel >= 0, sel.long(), torch.full_like(sel.long(), n)).transpose(0, 1)
    chosen.scatter_(-1, idx, True)
    key_block = torch.arange(length, device=q.device) // block
    pos = torch.arange(length, device=q.device)
    allowed = chosen[:, :, key_block] & (pos[None, None, :] <= pos[None, :, None])  # [Hq, L, L]
    qh = q.float().transpose(0, 1).reshape(hkv, group, length, d)
    kh, vh = k.float().transpose(0, 1), v.float().transpose(0, 1)        # [Hkv, L, D]: no repeat
    scores = torch.einsum("hgld,hmd->hglm", qh, kh).reshape(hq, length, length) * scale
    scores = scores.masked_fill(~allowed, -float("inf"))
    lse = torch.logsumexp(scores, dim=-1)                                  # [Hq, L]
    p = torch.exp(scores - lse[..., None]).view(hkv, group, length, length)
    out = torch.einsum("hglm,hmd->hgld", p, vh).reshape(hq, length, d)
    return out.transpose(0, 1).to(q.dtype), lse


def _moba(q, k, v, cu_seqlens, block, topk, scale, selection, seqlens, rounded):
    seqlens = seqlens if seqlens is not None else (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    slots = min(topk, max(-(-n // block) for n in seqlens))
    outs, lses, sels, start = [], [], [], 0
    for n in seqlens:
        qs, ks, vs = q[start:start + n], k[start:start + n], v[start:start + n]
        if selection is not None:
            sel = selection[start:start + n]
        else:
            with torch.no_grad():
                sel = _sequence_gating(qs, ks, block, topk, slots, rounded)
        out, lse = _sequence_attention(qs, ks, vs, sel, block, scale)
        outs.append(out)
        lses.append(lse)
        sels.append(sel)
        start += n
    return torch.cat(outs), torch.cat(lses, dim=1), torch.cat(sels)


def plain_moba(q, k, v, cu_seqlens, block, topk, *, scale=None, selection=None, seqlens=None):
    """MoBA with exact (fp32) block means: returns (out, lse, selection)."""
    return _moba(q, k, v, cu_seqlens, block, topk, scale, selection, seqlens, rounded=False)


def plain_moba_rounded(q, k, v, cu_seqlens, block, topk, *, scale=None, selection=None, seqlens=None):
    """The same with block means rounded to the input dtype (the official code's convention:
    check it with --block-means rounded)."""
    return _moba(q, k, v, cu_seqlens, block, topk, scale, selection, seqlens, rounded=True)
