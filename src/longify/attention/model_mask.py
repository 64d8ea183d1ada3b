"""Keep ``LongformerModel.forward`` from materialising an n x n attention mask.

transformers 5 builds a (b, 1, n, n) mask with ``create_bidirectional_mask`` and keeps only its row
``[:, 0, 0, :]`` (64 MiB per sequence at n = 4096, held for the whole forward). For models with fast
attention installed, the name ``create_bidirectional_mask`` inside ``modeling_longformer`` returns the
same values as a broadcast view of one row. Other models (HF attention) get the original function.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor
from transformers.models.longformer import modeling_longformer

_ORIGINAL = modeling_longformer.create_bidirectional_mask
_FAST_CONFIGS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _row_mask(config: Any, inputs_embeds: Tensor, attention_mask: Tensor | None, **kwargs: Any) -> Any:
    """``create_bidirectional_mask`` for Longformer: a (b, 1, n, n) view of one (b, n) row when possible."""
    simple = (
        attention_mask is not None
        and attention_mask.dim() == 2
        and not kwargs.get("allow_is_bidirectional_skip")
    )
    if (
        not simple
        or _FAST_CONFIGS.get(id(config)) is not config
        or set(kwargs) - {"allow_is_bidirectional_skip"}
    ):
        return _ORIGINAL(config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    dtype = inputs_embeds.dtype
    b, n = attention_mask.shape
    row = torch.zeros((b, 1, 1, n), dtype=dtype, device=inputs_embeds.device)
    row.masked_fill_(~attention_mask.bool()[:, None, None, :], torch.finfo(dtype).min)
    return row.expand(b, 1, n, n)


def enable_row_mask(config: Any) -> None:
    """Serve ``config``'s model the row mask (installs the name patch once per process)."""
    _FAST_CONFIGS[id(config)] = config
    modeling_longformer.create_bidirectional_mask = _row_mask


def disable_row_mask(config: Any) -> None:
    """Give ``config``'s model HF's full mask again."""
    _FAST_CONFIGS.pop(id(config), None)
