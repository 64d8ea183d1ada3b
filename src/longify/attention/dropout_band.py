"""CPU path for attention dropout in training: explicit probabilities over strided key / value windows.

PyTorch's CPU flash kernel has no dropout, and SDPA's math fallback needs the key / value windows
materialised. Here each (sequence, head) pair is one batch of query blocks: the scores of all blocks come
from one ``bmm`` of the query blocks against an overlapping strided *view* of the padded keys (no window
copies), the global key columns sit in front of the band columns of the same score buffer, the softmax
runs over the whole row (global + band, as HF), and the dropout mask is applied to the probabilities
(``nn.functional.dropout`` semantics: keep with probability 1 - p, scale by 1 / (1 - p)). The keep mask
is drawn once in the forward and kept as bool for the backward; the probabilities are recomputed in the
backward from the saved inputs (one ``bmm`` and a softmax per head, no n x span x heads activations).

Backward, with P the softmax, K the keep mask, c = 1 / (1 - p), X = dO V^T (all columns) and
D = rowsum(dO * O): dS = c P (K X - D / c); dQ = scale dS K_w; dK_w = dS^T (scale Q); dV_w = c (K P)^T dO.
Window gradients are folded into one q/k/v gradient buffer (``windows.fold_windows``, as in ``flash_cpu``).

The keep mask comes from 32 random bits per probability (drop iff the bits, read as a signed int32,
fall below round(p 2^32) - 2^31): P(drop) = p to within 2^-33, finer than ``torch.rand``'s 24 bits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from longify.attention.band_blocks import add_at_globals, block_dims, fold_windows, kv_windows, padded_kv

_softmax_out = torch.ops.aten._softmax.out


def usable(qkv: Tensor, dropout: float) -> bool:
    """True when this path applies: fp32 on CPU, no autocast, 0 <= dropout < 1."""
    return (
        qkv.device.type == "cpu"
        and qkv.dtype == torch.float32
        and 0.0 <= dropout < 1.0
        and not torch.is_autocast_enabled("cpu")
    )


def keep_threshold(p: float) -> int:
    """int32 threshold: 32 uniform random bits (as int32) >= threshold keeps, with probability 1 - p."""
    return max(-(2**31), min(2**31 - 1, round(p * 2**32) - 2**31))


def draw_keep(bits: Tensor, threshold: int, out: Tensor) -> Tensor:
    """Fill fp32 ``out`` with a fresh 0 / 1 keep mask; ``bits``: int64 scratch buffer of >= numel / 2 elements."""
    bits.random_(-(2**63), None)  # full 64-bit range: two independent uniform int32 per element
    return torch.ge(bits.view(torch.int32)[: out.numel()].view(out.shape), threshold, out=out)


class BandDropout(torch.autograd.Function):
    """qkv (b, n, 3, H, d) -> output (b, nb * block, H * d) with attention dropout ``p`` on the probabilities."""

    @staticmethod
    def forward(
        ctx: Any,
        qkv: Tensor,
        mask: Tensor,
        pos: Tensor | None,
        w: int,
        block: int,
        scale: float,
        p: float,
    ) -> Tensor:
        b, n, _, h, d = qkv.shape
        nb, total, span = block_dims(n, w, block)
        g = 0 if pos is None else pos.shape[1]
        width = g + span
        qs = (qkv.new_zeros if total != n else qkv.new_empty)(b, total, h, d)
        torch.mul(qkv[:, :, 0], scale, out=qs[:, :n])  # scaled queries (HF scales q before the scores)
        kvp = padded_kv(qkv, w, block)
        win = kv_windows(kvp, block, span)  # (2, b, nb, H, span, d), overlapping views
        gkv = None
        if pos is not None:
            gkv = qkv[:, :, 1:][torch.arange(b, device=qkv.device)[:, None], pos]  # (b, G, 2, H, d)
        mask = mask.view(b, nb, block, width)
        keep = torch.empty(b, h, nb, block, width, dtype=torch.uint8, device=qkv.device)
        bits = torch.empty(-(-nb * block * width // 2), dtype=torch.int64, device=qkv.device)
        threshold, c = keep_threshold(p), 1.0 / (1.0 - p)
        out = qkv.new_zeros(b, total, h, d)
        probs = qkv.new_empty(nb, block, width)
        keepf = qkv.new_empty(nb, block, width)  # fp32 copy of one head's mask (fp32 * uint8 would convert)
        for i in range(b):
            for hh in range(h):
                q = qs[i, :, hh].view(nb, block, d)
                _scores(probs, q, win[0, i, :, hh], gkv, i, hh, mask[i])
                probs.mul_(draw_keep(bits, threshold, keepf))
                keep[i, hh].copy_(keepf)
                o = out[i, :, hh].view(nb, block, d)
                o.baddbmm_(probs[..., g:], win[1, i, :, hh], alpha=c)
                if gkv is not None:
                    o.baddbmm_(probs[..., :g], gkv[i, :, 1, hh].expand(nb, g, d), alpha=c)
        out = out.view(b, total, h * d)
        ctx.save_for_backward(qs, kvp, gkv, mask, keep, out, pos)
        ctx.dims = (b, n, h, d, w, block, scale, p)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        qs, kvp, gkv, mask, keep, out, pos = ctx.saved_tensors
        b, n, h, d, w, block, scale, p = ctx.dims
        nb, total, span = block_dims(n, w, block)
        g = 0 if pos is None else pos.shape[1]
        win = kv_windows(kvp, block, span)
        width = g + span
        c = 1.0 / (1.0 - p)
        grad_out = grad_out.contiguous().view(b, total, h, d)
        rowdot = (grad_out * out.view_as(grad_out)).sum(-1, keepdim=True).mul_(1.0 / c)  # D / c
        grad = qs.new_zeros(b, total + 2 * w + block, 3, h, d)  # padded coordinates, token t at w + t
        dgkv = qs.new_zeros(b, g, 2, h, d) if g else None
        probs = qs.new_empty(nb, block, width)
        dprobs = qs.new_empty(nb, block, width)
        dwin = qs.new_empty(nb, span, d)
        kp = qs.new_empty(nb, block, width)
        for i in range(b):
            for hh in range(h):
                q = qs[i, :, hh].view(nb, block, d)
                k, v = win[0, i, :, hh], win[1, i, :, hh]
                go = grad_out[i, :, hh].view(nb, block, d)
                kp.copy_(keep[i, hh])
                _scores(probs, q, k, gkv, i, hh, mask[i])
                torch.bmm(go, v.transpose(1, 2), out=dprobs[..., g:])
                if gkv is not None:
                    dprobs[..., :g] = torch.matmul(go, gkv[i, :, 1, hh].transpose(0, 1))
                # dS / c = P (K X - D / c)
                dprobs.mul_(kp).sub_(rowdot[i, :, hh].view(nb, block, 1)).mul_(probs)
                dq = grad[i, w : w + total, 0, hh].view(nb, block, d)
                dq.baddbmm_(dprobs[..., g:], k, alpha=c * scale)
                torch.bmm(dprobs[..., g:].transpose(1, 2), q, out=dwin)
                fold_windows(grad[i, None, :, 1, hh], dwin[None], block, alpha=c)
                if dgkv is not None:
                    dq.baddbmm_(dprobs[..., :g], gkv[i, :, 0, hh].expand(nb, g, d), alpha=c * scale)
                    dgkv[i, :, 0, hh] = torch.mm(dprobs[..., :g].reshape(-1, g).t(), q.reshape(-1, d)) * c
                probs.mul_(kp)
                torch.bmm(probs[..., g:].transpose(1, 2), go, out=dwin)
                fold_windows(grad[i, None, :, 2, hh], dwin[None], block, alpha=c)
                if dgkv is not None:
                    dgkv[i, :, 1, hh] = torch.mm(probs[..., :g].reshape(-1, g).t(), go.reshape(-1, d)) * c
        if dgkv is not None:
            add_at_globals(grad[:, :, 1:], pos, w, dgkv)
        return grad[:, w : w + n], None, None, None, None, None, None


def _scores(probs: Tensor, q: Tensor, k: Tensor, gkv: Tensor | None, i: int, head: int, mask: Tensor) -> None:
    """Softmax probabilities (nb, block, G + span) of one sequence and head, in place in ``probs``."""
    g = probs.shape[-1] - k.shape[1]
    torch.bmm(q, k.transpose(1, 2), out=probs[..., g:])
    if gkv is not None:
        probs[..., :g] = torch.matmul(q, gkv[i, :, 0, head].transpose(0, 1))
    probs.add_(mask)
    _softmax_out(probs, -1, False, out=probs)


def band_dropout_attention(
    qkv: Tensor,
    mask: Tensor,
    w: int,
    block: int,
    pos: Tensor | None,
    dropout: float,
    scale: float,
) -> Tensor:
    """Like :func:`band.band_attention` (same ``mask``, global columns first), fp32 CPU. Returns (b, n, H * d)."""
    n = qkv.shape[1]
    out = BandDropout.apply(qkv, mask, pos, w, block, scale, dropout)
    return out[:, :n] if out.shape[1] != n else out
