"""CPU fast path: band attention with no copies of the key / value windows (fp32, no attention dropout).

PyTorch's CPU flash kernel reads keys and values through their strides, so overlapping windows can be
passed as views of one padded buffer. Global key columns cannot live in such a view; they are handled
beside the kernel and merged exactly through the log-sum-exp it returns. The backward calls the kernel's
backward with the *merged* output and log-sum-exp, which yields exactly the band part of the gradient of
the merged softmax; the global part is a few small matmuls. The kernel is called once per sequence
(forward) and per chunk of query blocks (backward): the windows of one sequence are a view, so batch > 1
copies no windows either.
"""

from __future__ import annotations

from typing import Any

import torch
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

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
CHUNK_ROWS = 1024  # query rows per backward kernel call (memory of the window gradients vs call overhead)


def usable(qkv: Tensor, dropout: float) -> bool:
    """True when the copy-free CPU path applies (else use :func:`band.band_attention`)."""
    return (
        qkv.device.type == "cpu"
        and qkv.dtype == torch.float32
        and dropout == 0.0
        and not torch.is_autocast_enabled("cpu")
    )


class BandFlash(torch.autograd.Function):
    """qkv (b, n, 3, H, d) -> attention output (b * nb, H, block, d) in query-block layout."""

    @staticmethod
    def forward(
        ctx: Any,
        qkv: Tensor,
        mask: Tensor,
        global_mask: Tensor | None,
        pos: Tensor | None,
        w: int,
        block: int,
        scale: float,
    ) -> Tensor:
        b, n, _, h, d = qkv.shape
        nb, _, span = block_dims(n, w, block)
        # a copy, so that the graph keeps q and the padded k / v, not the whole projection output too
        q = query_blocks(qkv, block).contiguous()
        kvp = padded_kv(qkv, w, block)
        out, lse = _band(q, kvp, mask, block, span, scale)
        p2 = gk = gv = None
        if pos is not None:
            rows = torch.arange(b, device=qkv.device)[:, None]
            gk, gv = (
                qkv[:, :, 1][rows, pos].transpose(1, 2),
                qkv[:, :, 2][rows, pos].transpose(1, 2),
            )  # (b, H, G, d)
            qb = q.view(b, nb, h, block, d)
            s2 = torch.matmul(qb, gk[:, None].transpose(-1, -2)) * scale + global_mask  # (b, nb, H, block, G)
            lse_all = torch.logaddexp(lse.view(b, nb, h, block), torch.logsumexp(s2, dim=-1))
            p2 = torch.exp(s2 - lse_all[..., None])
            out = out.view(b, nb, h, block, d) * torch.exp(lse.view_as(lse_all) - lse_all)[..., None]
            out = (out + torch.matmul(p2, gv[:, None])).view(b * nb, h, block, d)
            lse = lse_all.view_as(lse)
        ctx.save_for_backward(q, kvp, mask, out, lse, p2, gk, gv, pos)
        ctx.dims = (b, n, h, d, w, block, scale)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, kvp, mask, out, lse, p2, gk, gv, pos = ctx.saved_tensors
        b, n, h, d, w, block, scale = ctx.dims
        nb, total, span = block_dims(n, w, block)
        grad_out = grad_out.contiguous()
        grad = q.new_zeros(b, total + 2 * w + block, 3, h, d)  # padded coordinates, token t at w + t
        per_call = max(1, CHUNK_ROWS // block)  # blocks per backward call: bounds the window gradients
        for i in range(b):
            k, v = _windows(kvp[i : i + 1], block, span)  # views (no copies)
            for j0 in range(0, nb, per_call):
                j1 = min(nb, j0 + per_call)
                sl = slice(i * nb + j0, i * nb + j1)
                dq, dk, dv = _flash_backward(
                    grad_out[sl],
                    q[sl],
                    k[j0:j1],
                    v[j0:j1],
                    out[sl],
                    lse[sl],
                    0.0,
                    False,
                    attn_mask=mask[sl],
                    scale=scale,
                )
                _fold(grad[i], dq, dk, dv, j0, j1 - j0, w, block)
        if pos is not None:
            go = grad_out.view(b, nb, h, block, d)
            row_dot = (go * out.view_as(go)).sum(-1, keepdim=True)  # D = rowsum(dO * O)
            ds2 = p2 * (torch.matmul(go, gv[:, None].transpose(-1, -2)) - row_dot)  # (b, nb, H, block, G)
            grad[:, w : w + total, 0].view(b, nb, block, h, d).add_(
                torch.matmul(ds2, gk[:, None]).transpose(2, 3), alpha=scale
            )
            dgk = torch.einsum("bnhqg,bnhqd->bghd", ds2, q.view(b, nb, h, block, d)) * scale
            dgv = torch.einsum("bnhqg,bnhqd->bghd", p2, go)
            add_at_globals(grad[:, :, 1], pos, w, dgk)
            add_at_globals(grad[:, :, 2], pos, w, dgv)
        return grad[:, w : w + n], None, None, None, None, None, None


def _fold(grad: Tensor, dq: Tensor, dk: Tensor, dv: Tensor, j0: int, m: int, w: int, block: int) -> None:
    """Add the gradients of query blocks j0..j0+m (one sequence) into grad (rows, 3, H, d), padded coordinates."""
    _, _, h, d = grad.shape
    span = block + 2 * w
    base = j0 * block
    unblock_into(grad[None, w + base : w + base + m * block, 0], dq.view(1, m, h, block, d))
    for idx, gw in ((1, dk), (2, dv)):
        fold_windows(grad[None, base:, idx], gw.reshape(1, m, h, span, d).transpose(2, 3), block)


def _band(q: Tensor, kvp: Tensor, mask: Tensor, block: int, span: int, scale: float) -> tuple[Tensor, Tensor]:
    """Kernel forward, one call per sequence: the windows of one sequence are a view of ``kvp`` (those of
    several sequences are not: their (sequence, block) pairs do not share one stride), so nothing is copied."""
    b = kvp.shape[0]
    if b == 1:
        k, v = _windows(kvp, block, span)
        return _flash(q, k, v, 0.0, False, attn_mask=mask, scale=scale)
    nb = q.shape[0] // b
    outs, lses = [], []
    for i in range(b):
        k, v = _windows(kvp[i : i + 1], block, span)
        sl = slice(i * nb, (i + 1) * nb)
        out, lse = _flash(q[sl], k, v, 0.0, False, attn_mask=mask[sl], scale=scale)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def _windows(kvp: Tensor, block: int, span: int) -> tuple[Tensor, Tensor]:
    """Overlapping (b * nb, H, span, d) key and value views of the padded (b, total + 2w, 2, H, d) buffer."""
    b, _, _, h, d = kvp.shape
    win = kv_windows(kvp, block, span)  # (2, b, nb, H, span, d), a view
    nb = win.shape[2]
    return win[0].reshape(b * nb, h, span, d), win[1].reshape(b * nb, h, span, d)


def band_flash_attention(
    qkv: Tensor,
    mask: Tensor,
    global_mask: Tensor | None,
    pos: Tensor | None,
    w: int,
    block: int,
    scale: float,
) -> Tensor:
    """Like :func:`band.band_attention` (no dropout); ``mask`` without global columns. Returns (b, n, H * d)."""
    b, n, _, h, d = qkv.shape
    out = BandFlash.apply(qkv, mask, global_mask, pos, w, block, scale)
    out = out.view(b, -1, h, block, d).transpose(2, 3).reshape(b, -1, h * d)
    return out[:, :n] if out.shape[1] != n else out
