"""Rows of global tokens: they attend to every unmasked key through the separate global projections.

With few global tokens (G * heads < hidden) the keys are never projected: the score of global query
``qg`` against token ``x_j`` is ``(W_k^T qg) . x_j + qg . b_k``, and the output is
``W_v (sum_j p_j x_j) + b_v sum_j p_j``, the same function as projecting every key and value
(HF's ``key_global`` / ``value_global`` over the whole sequence) at a fraction of the cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def global_positions(is_global: Tensor) -> tuple[Tensor, Tensor]:
    """(b, n) bool -> positions (b, G) of each row's global tokens in order (0 where unused) and valid (b, G)."""
    b, n = is_global.shape
    num = int(is_global.sum(dim=1).max().item())
    idx = torch.arange(n, device=is_global.device).expand(b, n)
    order = torch.where(is_global, idx, idx + n).sort(dim=1).values[:, :num]
    valid = order < n
    return torch.where(valid, order, torch.zeros_like(order)), valid


def gather_rows(x: Tensor, pos: Tensor) -> Tensor:
    """x (b, n, ...) at positions pos (b, G) -> (b, G, ...)."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, pos]


def global_rows(
    hidden: Tensor,
    pos: Tensor,
    valid: Tensor,
    key_masked: Tensor,
    query: nn.Linear,
    key: nn.Linear,
    value: nn.Linear,
    num_heads: int,
    dropout: float,
) -> Tensor:
    """Attention output (b, G, hidden) of the global tokens at ``pos`` (where ``valid``) over all keys not ``key_masked``."""
    b, n, e = hidden.shape
    d = e // num_heads
    g = pos.shape[1]
    qg = query(gather_rows(hidden, pos)) / math.sqrt(d)  # (b, G, e), scaled after the bias as HF
    qg = qg.view(b, g, num_heads, d)
    # unused slots (rows with fewer global tokens) mask nothing, so no row is empty (no NaN in backward)
    fill = (key_masked[:, None, :] & valid[:, :, None])[:, :, None, :]  # (b, G, 1, n)
    if g * num_heads < e:
        w_k = key.weight.view(num_heads, d, e)
        u = torch.einsum("bghd,hde->bghe", qg, w_k.to(qg.dtype)).reshape(b, g * num_heads, e)
        shift = (qg * key.bias.view(num_heads, d).to(qg.dtype)).sum(-1).reshape(b, g * num_heads, 1)
        scores = torch.baddbmm(shift, u, hidden.transpose(1, 2).to(u.dtype))  # (b, G*H, n)
        scores = scores.view(b, g, num_heads, n).masked_fill(fill, float("-inf")).view(b, g * num_heads, n)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32)
        probs = F.dropout(probs.to(scores.dtype), p=dropout, training=dropout > 0)
        ctx = torch.bmm(probs, hidden.to(probs.dtype)).view(b, g, num_heads, e)
        w_v = value.weight.view(num_heads, d, e)
        out = torch.einsum("bghe,hde->bghd", ctx, w_v.to(ctx.dtype))
        mass = probs.sum(-1).view(b, g, num_heads, 1) if dropout > 0 else 1.0
        out = out + value.bias.view(num_heads, d).to(out.dtype) * mass
        return out.reshape(b, g, e)
    k = key(hidden).view(b, n, num_heads, d).transpose(1, 2)
    v = value(hidden).view(b, n, num_heads, d).transpose(1, 2)
    scores = torch.matmul(qg.transpose(1, 2), k.transpose(2, 3))  # (b, H, G, n)
    probs = F.softmax(scores.masked_fill(fill.transpose(1, 2), float("-inf")), dim=-1, dtype=torch.float32)
    probs = F.dropout(probs.to(scores.dtype), p=dropout, training=dropout > 0)
    return torch.matmul(probs, v).transpose(1, 2).reshape(b, g, e)
