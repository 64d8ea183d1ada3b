"""Exact sliding-window (+ global key columns) attention over query blocks.

The sequence is cut into query blocks of ``block`` tokens; each block attends to the keys from ``w``
before its first query to ``w`` after its last one (``block + 2w`` keys) plus the global key columns,
under an additive band mask, through one ``scaled_dot_product_attention`` call. The work is
``(block + 2w) / (2w + 1)`` times the exact band and there are no n x n tensors.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from longify.attention.band_blocks import (
    add_at_globals,
    block_dims,
    fold_windows,
    kv_windows,
    padded_kv,
    query_blocks,
    unblock_into,
)


def band_pattern(block: int, w: int, device: torch.device) -> Tensor:
    """(block, block + 2w) bool: query row r of a block may see key column c of its window."""
    r = torch.arange(block, device=device)[:, None]
    c = torch.arange(block + 2 * w, device=device)[None, :]
    return (c >= r) & (c <= r + 2 * w)


def block_mask(
    key_ok: Tensor,
    row_free: Tensor,
    global_ok: Tensor | None,
    w: int,
    block: int,
    dtype: torch.dtype,
) -> Tensor:
    """Additive mask (b * n_blocks, 1, block, G + block + 2w): 0 where attention is allowed, -inf elsewhere.

    key_ok (b, n): key may be attended inside the band (not padding, not global).
    row_free (b, n): query row whose result is discarded (padding); it may see any in-band key so that
    no row is empty (no NaN, forward or backward). global_ok (b, G): valid global key columns.
    """
    b, n = key_ok.shape
    n_blocks = -(-n // block)
    tail = n_blocks * block - n
    win = F.pad(key_ok, (w, tail + w), value=False).unfold(1, block + 2 * w, block)  # (b, nb, block+2w)
    free = F.pad(row_free, (0, tail), value=True).view(b, n_blocks, block, 1)
    allowed = band_pattern(block, w, key_ok.device) & (win[:, :, None, :] | free)
    if global_ok is not None:
        g = global_ok[:, None, None, :].expand(b, n_blocks, block, global_ok.shape[1])
        allowed = torch.cat((g, allowed), dim=-1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=key_ok.device)
    mask.masked_fill_(~allowed, float("-inf"))
    return mask.view(b * n_blocks, 1, block, -1)


class BlockWindows(torch.autograd.Function):
    """qkv (b, n, 3, H, d) -> query blocks (b*nb, H, block, d) and key / value windows (b*nb, H, G+block+2w, d).

    A custom function so that the backward folds the overlapping window gradients straight into one
    qkv gradient buffer (strided adds), instead of autograd's unfold / pad / stack backward copies.
    """

    @staticmethod
    def forward(
        ctx: Any, qkv: Tensor, pos: Tensor | None, w: int, block: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _, h, d = qkv.shape
        nb, _, span = block_dims(n, w, block)
        g = 0 if pos is None else pos.shape[1]
        q = query_blocks(qkv, block)
        kv = qkv.new_empty(2, b, nb, h, g + span, d)
        kv[..., g:, :] = kv_windows(padded_kv(qkv, w, block), block, span)
        if pos is not None:
            rows = torch.arange(b, device=qkv.device)[:, None]
            kv[..., :g, :] = qkv[:, :, 1:][rows, pos].permute(2, 0, 3, 1, 4)[:, :, None]
            ctx.save_for_backward(pos)
        ctx.dims = (b, n, h, d, w, block, g)
        return q, kv[0].view(b * nb, h, g + span, d), kv[1].view(b * nb, h, g + span, d)

    @staticmethod
    def backward(ctx: Any, grad_q: Tensor, grad_k: Tensor, grad_v: Tensor) -> tuple[Tensor | None, ...]:
        b, n, h, d, w, block, g = ctx.dims
        pos = ctx.saved_tensors[0] if g else None  # unpack once (activation checkpointing allows no more)
        nb, total, span = block_dims(n, w, block)
        grad = grad_q.new_zeros(b, total + 2 * w + block, 3, h, d)  # padded coordinates, token t at w + t
        unblock_into(grad[:, w : w + total, 0], grad_q.reshape(b, nb, h, block, d))
        for idx, gw in ((1, grad_k), (2, grad_v)):
            gw = gw.reshape(b, nb, h, g + span, d)
            fold_windows(grad[:, :, idx], gw[:, :, :, g:].transpose(2, 3), block)
            if pos is not None:
                add_at_globals(
                    grad[:, :, idx], pos, w, gw[:, :, :, :g].sum(1).transpose(1, 2)
                )  # (b, G, H, d)
        return grad[:, w : w + n], None, None, None


def band_attention(
    qkv: Tensor,
    mask: Tensor,
    w: int,
    block: int,
    pos: Tensor | None = None,
    dropout: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """Sliding-window attention of qkv (b, n, 3, H, d) within +-w, plus the global key columns at ``pos``.

    ``mask`` comes from :func:`block_mask` with the same ``w`` and ``block``. Returns (b, n, H * d).
    """
    b, n, _, h, d = qkv.shape
    q, k, v = BlockWindows.apply(qkv, pos, w, block)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
    out = out.view(b, -1, h, block, d).transpose(2, 3).reshape(b, -1, h * d)
    return out[:, :n] if out.shape[1] != n else out
