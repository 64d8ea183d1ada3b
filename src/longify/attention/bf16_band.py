"""CPU band attention in bf16 (autocast or bf16 weights): bf16 matmuls, fp32 softmax, no window copies.

PyTorch's CPU flash kernel gains nothing from bf16 on a CPU without AMX (it runs at its fp32 speed), while
``bmm`` in bf16 runs at 2-3x the fp32 rate where the CPU has native bf16 (AVX-512 BF16; without it, AVX2 only,
bf16 is several times slower than fp32 and ``--bf16`` is refused: ``longify.cpu``). So this path computes explicit probabilities, as
``dropout_band`` does, one (sequence, head, chunk of query blocks) at a time: the scores of a chunk come
from one bf16 ``bmm`` of its query blocks against an overlapping strided *view* of the keys (no window
copies), the global key columns sit in front of the band columns, and the band mask, the softmax (max,
sum) and the dropout mask are applied in an fp32 buffer small enough to stay in cache; the probabilities
go back to bf16 for the ``bmm`` against the value views. Keys are kept transposed per head (d x rows), the
layout in which the overlapping views multiply at full speed.

The backward recomputes the probabilities of one chunk at a time (nothing of size n x span is kept) and
works in fp32 except for the matmuls: with P the softmax, K the keep mask, c = 1 / (1 - p) and
G = c K (dO V^T): dS = P (G - rowsum(P G)); dQ = scale dS K_w; dK_w = dS^T (scale Q); dV_w = c (K P)^T dO.
The row sums are taken from the fp32 P and G, not from the bf16 output. dK and dV come out of the matmuls
transposed (d x span per window, the faster product) and are folded into one head's fp32 (d x rows)
buffer, rounded to bf16 once. The same code runs in fp32 / fp64 (the tests compare it in fp64 with
``dropout_band`` and with finite differences); only bf16 is routed here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from longify.attention.band_blocks import block_dims
from longify.attention.dropout_band import draw_keep, keep_threshold

_softmax_out = torch.ops.aten._softmax.out
# query blocks per step: the fp32 buffers of one chunk (~2.6 MiB each at w = 256) stay in cache
CHUNK_BLOCKS = 8


def usable(qkv: Tensor, dropout: float) -> bool:
    """True when this path applies: bf16 on CPU (autocast or bf16 weights), 0 <= dropout < 1."""
    return qkv.device.type == "cpu" and qkv.dtype == torch.bfloat16 and 0.0 <= dropout < 1.0


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the softmax and its statistics: fp32 for reduced precision, else the input's."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _head_major(x: Tensor, rows: int, at: int, scale: float = 1.0) -> Tensor:
    """x (b, n, H, d) -> (b, H, rows, d) with token t at row ``at + t`` (times ``scale``), zeros elsewhere."""
    b, n, h, d = x.shape
    out = x.new_empty(b, h, rows, d)
    out[:, :, :at].zero_()
    out[:, :, at + n :].zero_()
    out[:, :, at : at + n].copy_(x.transpose(1, 2))  # copy_, then scale: a strided mul(out=) is slow
    if scale != 1.0:
        out.mul_(scale)
    return out


def _views(t: Tensor, block: int, span: int, transposed: bool) -> Tensor:
    """Overlapping windows (nb, span, d) of one head's rows (rows, d), or (nb, d, span) of its (d, rows)."""
    if transposed:
        return t.unfold(1, span, block).transpose(0, 1)
    return t.unfold(0, span, block).transpose(1, 2)


class _Chunk:
    """Scratch buffers for one chunk of up to ``m`` query blocks (reused across heads and chunks)."""

    def __init__(self, qs: Tensor, m: int, block: int, span: int, g: int) -> None:
        width = g + span
        sd = stat_dtype(qs.dtype)
        self.probs = qs.new_empty(m, block, width, dtype=sd)  # fp32 probabilities
        self.work = qs.new_empty(m, block, width, dtype=sd)  # fp32 second buffer (keep mask, dP, ...)
        self.low = qs.new_empty(m, block, width)  # bf16 copy fed to the matmuls
        self.band = qs.new_empty(m, block, span)  # bf16 band products (scores, dO V^T)
        self.tmp = qs.new_empty(m, block, width, dtype=sd)  # fp32 products
        self.wint = qs.new_empty(m, qs.shape[-1], span)  # bf16 transposed window gradients
        self.g = g

    def scores(self, m: int, q: Tensor, kt: Tensor, sg: Tensor | None, mask: Tensor) -> Tensor:
        """Softmax probabilities (m, block, G + span) in fp32: global columns ``sg`` first, then the band.

        The mask holds only 0 and -inf, so adding it in bf16 is exact."""
        probs, g = self.probs[:m], self.g
        torch.bmm(q, kt, out=self.band[:m])
        torch.add(self.band[:m], mask[..., g:], out=probs[..., g:])
        if sg is not None:
            torch.add(sg, mask[..., :g], out=probs[..., :g])
        _softmax_out(probs, -1, False, out=probs)
        return probs

    def lowered(self, m: int, x: Tensor, scale: float = 1.0) -> Tensor:
        """``x`` (fp32) times ``scale`` in the matmul dtype, in the ``low`` buffer."""
        return torch.mul(x, scale, out=self.low[:m]) if scale != 1.0 else self.low[:m].copy_(x)


class BandBF16(torch.autograd.Function):
    """qkv (b, n, 3, H, d) -> output (b, nb * block, H * d); ``mask`` from ``band.block_mask`` (global first).

    The global key columns take part in each chunk's softmax; their matmuls (scores, their share of the
    output and of the gradients) run once per layer over all rows, before or after the chunk loop.
    """

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
        with torch.autocast("cpu", enabled=False):
            b, n, _, h, d = qkv.shape
            nb, total, span = block_dims(n, w, block)
            g = 0 if pos is None else pos.shape[1]
            qs = _head_major(qkv[:, :, 0], total, 0, scale)  # scaled queries (HF scales q before the scores)
            kt = _head_major(qkv[:, :, 1], total + 2 * w, w).transpose(-1, -2).contiguous()  # (b, H, d, rows)
            v = _head_major(qkv[:, :, 2], total + 2 * w, w)
            gk = gv = sg = pg = None
            if pos is not None:
                gkv = qkv[torch.arange(b, device=qkv.device)[:, None], pos]  # (b, G, 3, H, d)
                gk, gv = gkv[:, :, 1].transpose(1, 2), gkv[:, :, 2].transpose(1, 2)  # (b, H, G, d)
                sg = torch.matmul(gk, qs.transpose(-1, -2)).transpose(-1, -2)  # (b, H, total, G) view
                pg = qs.new_empty(b, h, total, g)
            masks = mask.view(b, nb, block, g + span)
            save = any(ctx.needs_input_grad)
            keep = None
            if p > 0 and save:
                keep = torch.empty(b, h, nb, block, g + span, dtype=torch.uint8, device=qkv.device)
            c = 1.0 / (1.0 - p)
            step = min(CHUNK_BLOCKS, nb)
            buf = _Chunk(qs, step, block, span, g)
            threshold = keep_threshold(p)
            bits = torch.empty(-(-step * block * (g + span) // 2) if p > 0 else 0, dtype=torch.int64)
            out = qs.new_empty(b, h, total, d)
            for i in range(b):
                for hh in range(h):
                    kw, vw = _views(kt[i, hh], block, span, True), _views(v[i, hh], block, span, False)
                    for j0 in range(0, nb, step):
                        m = min(step, nb - j0)
                        rows = slice(j0 * block, (j0 + m) * block)
                        q = qs[i, hh, rows].view(m, block, d)
                        sgc = None if sg is None else sg[i, hh, rows].view(m, block, g)
                        probs = buf.scores(m, q, kw[j0 : j0 + m], sgc, masks[i, j0 : j0 + m])
                        if p > 0:
                            kf = draw_keep(bits, threshold, buf.work[:m])
                            probs.mul_(kf)
                            if keep is not None:
                                keep[i, hh, j0 : j0 + m].copy_(kf)
                        low = buf.lowered(m, probs, c)
                        torch.bmm(low[..., g:], vw[j0 : j0 + m], out=out[i, hh, rows].view(m, block, d))
                        if pg is not None:
                            pg[i, hh, rows].view(m, block, g).copy_(low[..., :g])
            if pg is not None and gv is not None:
                out.add_(torch.matmul(pg, gv))
            if save:
                ctx.save_for_backward(qs, kt, v, gk, gv, mask, keep, pos)
                ctx.dims = (b, n, h, d, w, block, scale, p)
            return out.transpose(1, 2).reshape(b, total, h * d)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        with torch.autocast("cpu", enabled=False):
            qs, kt, v, gk, gv, mask, keep, pos = ctx.saved_tensors
            b, n, h, d, w, block, scale, p = ctx.dims
            nb, total, span = block_dims(n, w, block)
            g = 0 if pos is None else pos.shape[1]
            c = 1.0 / (1.0 - p)
            masks = mask.view(b, nb, block, g + span)
            go = grad_out.to(qs.dtype).view(b, total, h, d).transpose(1, 2).contiguous()  # (b, H, total, d)
            k = kt.transpose(-1, -2).contiguous()  # (b, H, rows, d)
            vt = v.transpose(-1, -2).contiguous()  # (b, H, d, rows)
            grad = qs.new_empty(b, n, 3, h, d)
            grad_q = qs.new_empty(b, h, total, d)
            # one head's dK^T and dV^T in fp32, padded coordinates (token t at w + t), reused per head
            gkv = qs.new_empty(2, d, total + 2 * w + block, dtype=stat_dtype(qs.dtype))
            sg = dpg = dsg = pkg = None
            if gk is not None and gv is not None:
                sg = torch.matmul(gk, qs.transpose(-1, -2)).transpose(-1, -2)  # (b, H, total, G) views
                dpg = torch.matmul(gv, go.transpose(-1, -2)).transpose(-1, -2)
                dsg, pkg = qs.new_empty(b, h, total, g), qs.new_empty(b, h, total, g)
            step = min(CHUNK_BLOCKS, nb)
            buf = _Chunk(qs, step, block, span, g)
            for i in range(b):
                for hh in range(h):
                    kw_t, kw = _views(kt[i, hh], block, span, True), _views(k[i, hh], block, span, False)
                    vw_t = _views(vt[i, hh], block, span, True)
                    gkv.zero_()
                    for j0 in range(0, nb, step):
                        m = min(step, nb - j0)
                        rows = slice(j0 * block, (j0 + m) * block)
                        q, dout = qs[i, hh, rows].view(m, block, d), go[i, hh, rows].view(m, block, d)
                        sgc = None if sg is None else sg[i, hh, rows].view(m, block, g)
                        probs = buf.scores(m, q, kw_t[j0 : j0 + m], sgc, masks[i, j0 : j0 + m])
                        dp = buf.work[:m]  # G = c K (dO V^T), fp32
                        torch.bmm(dout, vw_t[j0 : j0 + m], out=buf.band[:m])
                        dp[..., g:].copy_(buf.band[:m])
                        if dpg is not None:
                            dp[..., :g].copy_(dpg[i, hh, rows].view(m, block, g))
                        if keep is not None:
                            dp.mul_(keep[i, hh, j0 : j0 + m]).mul_(c)
                        rowdot = torch.mul(probs, dp, out=buf.tmp[:m]).sum(-1, keepdim=True)  # rowsum(P G)
                        ds = torch.mul(dp.sub_(rowdot), probs, out=buf.low[:m])  # dS, in bf16
                        torch.bmm(ds[..., g:], kw[j0 : j0 + m], out=grad_q[i, hh, rows].view(m, block, d))
                        torch.bmm(q.transpose(1, 2), ds[..., g:], out=buf.wint[:m])  # dK^T windows
                        _fold_t(gkv[0], buf.wint[:m], j0 * block, block)
                        if dsg is not None:
                            dsg[i, hh, rows].view(m, block, g).copy_(ds[..., :g])
                        if keep is not None:
                            probs.mul_(keep[i, hh, j0 : j0 + m])
                        pk = buf.lowered(m, probs, c)  # c K P (bf16)
                        torch.bmm(dout.transpose(1, 2), pk[..., g:], out=buf.wint[:m])  # dV^T windows
                        _fold_t(gkv[1], buf.wint[:m], j0 * block, block)
                        if pkg is not None:
                            pkg[i, hh, rows].view(m, block, g).copy_(pk[..., :g])
                    if dsg is not None and pkg is not None and pos is not None:
                        dgk = dsg[i, hh].transpose(0, 1) @ qs[i, hh]  # (G, d); unused slots add zeros
                        dgv = pkg[i, hh].transpose(0, 1) @ go[i, hh]
                        gkv.index_add_(2, pos[i] + w, torch.stack((dgk, dgv)).transpose(1, 2).to(gkv.dtype))
                    kv_rows = (
                        gkv[:, :, w : w + n].transpose(1, 2).contiguous()
                    )  # (2, n, d): fast 2-d transposes
                    grad[i, :, 1:, hh].copy_(kv_rows.transpose(0, 1))
            if dsg is not None and gk is not None:
                grad_q.add_(torch.matmul(dsg, gk))
            grad[:, :, 0].copy_(grad_q[:, :, :n].transpose(1, 2))
            grad[:, :, 0].mul_(scale)
            return grad, None, None, None, None, None, None


def _fold_t(grad: Tensor, windows: Tensor, start: int, block: int) -> None:
    """Add transposed window gradients (m, d, span) into one head's (d, rows) buffer, window j at ``start + j block``.

    ``rows`` must reach ``start + m * block + span`` rounded up to a multiple of ``block``."""
    m, d, span = windows.shape
    for o in range(0, span, block):
        size = min(block, span - o)
        target = grad[:, start + o : start + o + m * block].view(d, m, block)[:, :, :size]
        target.add_(windows[:, :, o : o + size].transpose(0, 1))


def band_bf16_attention(
    qkv: Tensor,
    mask: Tensor,
    w: int,
    block: int,
    pos: Tensor | None,
    dropout: float,
    scale: float,
) -> Tensor:
    """Like :func:`band.band_attention` (same ``mask``, global columns first), bf16 on CPU. Returns (b, n, H * d)."""
    n = qkv.shape[1]
    out = BandBF16.apply(qkv, mask, pos, w, block, scale, dropout)
    return out[:, :n] if out.shape[1] != n else out
