"""Extend a learned position-embedding table to more positions.

The table of a RoBERTa-style model has ``offset`` leading rows (padding and below) that are never used
for real tokens, then one row per position. The extended table keeps the leading rows and fills the
``new_len`` position rows by one of three methods:

- ``copy``: the Longformer paper's tiling: the source rows repeated in order, the last copy truncated;
- ``interpolate``: the source rows linearly stretched over the new length (ends pinned);
- ``random``: the source rows kept, the extension drawn from N(0, init_std).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

PositionInit = Callable[[torch.Tensor, int, float, torch.Generator], torch.Tensor]


def _copy(rows: torch.Tensor, new_len: int, init_std: float, gen: torch.Generator) -> torch.Tensor:
    reps = -(-new_len // rows.shape[0])
    return rows.repeat(reps, 1)[:new_len].clone()


def _interpolate(rows: torch.Tensor, new_len: int, init_std: float, gen: torch.Generator) -> torch.Tensor:
    x = rows.t().unsqueeze(0).float()  # (1, hidden, src_len)
    out = F.interpolate(x, size=new_len, mode="linear", align_corners=True)
    return out.squeeze(0).t().to(rows.dtype).contiguous()


def _random(rows: torch.Tensor, new_len: int, init_std: float, gen: torch.Generator) -> torch.Tensor:
    extra = torch.randn(new_len - rows.shape[0], rows.shape[1], generator=gen) * init_std
    return torch.cat([rows, extra.to(rows.dtype)], dim=0)


POSITION_INITS: dict[str, PositionInit] = {"copy": _copy, "interpolate": _interpolate, "random": _random}


def extend_positions(
    table: torch.Tensor,
    *,
    src_offset: int,
    dst_offset: int,
    new_len: int,
    method: str = "copy",
    init_std: float = 0.02,
    seed: int = 0,
) -> torch.Tensor:
    """Return a ``(dst_offset + new_len, hidden)`` table built from ``table``.

    ``src_offset`` leading rows of the source are carried over when ``dst_offset`` equals it; when the
    source has no offset (BERT) the leading rows of the result are zeros (they only ever serve padding).
    """
    rows = table[src_offset:]
    if new_len <= rows.shape[0]:
        raise ValueError(f"new_len {new_len} must exceed the source's {rows.shape[0]} positions")
    gen = torch.Generator().manual_seed(seed)
    body = POSITION_INITS[method](rows, new_len, init_std, gen)
    head = torch.zeros(dst_offset, table.shape[1], dtype=table.dtype)
    keep = min(src_offset, dst_offset)
    head[:keep] = table[:keep]
    return torch.cat([head, body], dim=0)
