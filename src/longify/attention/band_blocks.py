"""The block layout of the attention band, shared by the four band kernels (``band``, ``flash_cpu``,
``dropout_band``, ``bf16_band``).

The sequence is cut into ``nb`` query blocks of ``block`` tokens (``total = nb * block`` rows, the tail
padded); query block j sees the ``span = block + 2w`` keys from ``w`` before its first row. Keys and values
live in one zero-padded buffer (token t at row ``w + t``), so window j is rows ``j * block`` to
``j * block + span`` of it: overlapping strided views, no copies. In the backward, gradients of the windows
are folded back into one padded gradient buffer with the same coordinates (strided adds, no pad / stack).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def block_dims(n: int, w: int, block: int) -> tuple[int, int, int]:
    """(nb, total, span): number of query blocks, padded length, keys per window."""
    nb = -(-n // block)
    return nb, nb * block, block + 2 * w


def query_blocks(qkv: Tensor, block: int) -> Tensor:
    """Queries of qkv (b, n, 3, H, d) as query blocks (b * nb, H, block, d), tail zero-padded (a view when
    no padding was needed: call ``.contiguous()`` for a copy that does not keep ``qkv`` alive)."""
    b, n, _, h, d = qkv.shape
    nb, total, _ = block_dims(n, 0, block)
    q = qkv[:, :, 0]
    if total != n:
        q = F.pad(q, (0, 0, 0, 0, 0, total - n))
    return q.view(b, nb, block, h, d).permute(0, 1, 3, 2, 4).reshape(b * nb, h, block, d)


def padded_kv(qkv: Tensor, w: int, block: int) -> Tensor:
    """Keys and values of qkv (b, n, 3, H, d) in one zero-padded buffer (b, total + 2w, 2, H, d), token t at w + t."""
    b, n, _, h, d = qkv.shape
    _, total, _ = block_dims(n, w, block)
    kvp = qkv.new_empty(b, total + 2 * w, 2, h, d)
    kvp[:, :w].zero_()
    kvp[:, w + n :].zero_()
    kvp[:, w : w + n] = qkv[:, :, 1:]
    return kvp


def kv_windows(kvp: Tensor, block: int, span: int) -> Tensor:
    """Overlapping key / value windows of the padded buffer: a (2, b, nb, H, span, d) view (0 keys, 1 values)."""
    return kvp.unfold(1, span, block).permute(2, 0, 1, 3, 5, 4)


def fold_windows(grad: Tensor, windows: Tensor, block: int, alpha: float = 1.0) -> None:
    """Add window gradients ``windows`` (B, nb, span, ...) into ``grad`` (B, rows, ...), padded coordinates.

    Window j covers rows ``j * block`` to ``j * block + span`` of ``grad``; ``rows`` must reach
    ``nb * block + span`` rounded up to a multiple of ``block`` (the buffers are ``total + 2w + block`` long).
    """
    nb, span = windows.shape[1], windows.shape[2]
    total = nb * block
    for o in range(0, span, block):
        size = min(block, span - o)
        target = grad[:, o : o + total].view(grad.shape[0], nb, block, *grad.shape[2:])[:, :, :size]
        target.add_(windows[:, :, o : o + size], alpha=alpha)


def unblock_into(grad: Tensor, blocks: Tensor) -> None:
    """Copy query-block gradients ``blocks`` (B, m, H, block, d) into token rows ``grad`` (B, m * block, H, d)."""
    b, m, h, block, d = blocks.shape
    grad.view(b, m, block, h, d).copy_(blocks.transpose(2, 3))


def add_at_globals(grad: Tensor, pos: Tensor, w: int, values: Tensor) -> None:
    """Add ``values`` (b, G, ...) into padded rows ``grad`` (b, rows, ...) at the global tokens ``pos`` (b, G)."""
    rows = torch.arange(pos.shape[0], device=pos.device)[:, None].expand_as(pos)
    grad.index_put_((rows, pos + w), values, accumulate=True)
