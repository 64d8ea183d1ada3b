"""Keep ``LongformerModel.forward`` from materialising an n x n attention mask.

transformers 5 builds a (b, 1, n, n) mask with ``create_bidirectional_mask`` and keeps only its row
``[:, 0, 0, :]`` (64 MiB per sequence at n = 4096, held for the whole forward). For models with fast
attention installed, the name ``create_bidirectional_mask`` inside ``modeling_longformer`` returns the
same values as a broadcast view of one row. Other models (HF attention) get the original function.

The patch is scoped: it is installed when the first model registers (:func:`enable_row_mask`), only over
the function this module found at import (anything else there means another library patched it: refused,
not overwritten), and the original is put back when the last registered model is reverted
(:func:`release_row_mask`) or garbage-collected. On a transformers without that name nothing is patched
(the fast attention itself needs no patch; the patch only saves memory).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from transformers.models.longformer import modeling_longformer

from longify.errors import LongifyError

NAME = "create_bidirectional_mask"
_ORIGINAL: Callable[..., Any] | None = getattr(modeling_longformer, NAME, None)
# id(model) -> (weak reference to the model, the Longformer configs of its modules)
_USERS: dict[int, tuple[weakref.ref[nn.Module], tuple[Any, ...]]] = {}


def _is_fast_config(config: Any) -> bool:
    return any(c is config for _, configs in tuple(_USERS.values()) for c in configs)


def _row_mask(config: Any, inputs_embeds: Tensor, attention_mask: Tensor | None, **kwargs: Any) -> Any:
    """``create_bidirectional_mask`` for Longformer: a (b, 1, n, n) view of one (b, n) row when possible."""
    assert _ORIGINAL is not None  # installed only over an existing function
    simple = (
        attention_mask is not None
        and attention_mask.dim() == 2
        and not kwargs.get("allow_is_bidirectional_skip")
    )
    if not simple or not _is_fast_config(config) or set(kwargs) - {"allow_is_bidirectional_skip"}:
        return _ORIGINAL(config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    dtype = inputs_embeds.dtype
    b, n = attention_mask.shape
    row = torch.zeros((b, 1, 1, n), dtype=dtype, device=inputs_embeds.device)
    row.masked_fill_(~attention_mask.bool()[:, None, None, :], torch.finfo(dtype).min)
    return row.expand(b, 1, n, n)


def installed() -> bool:
    """True while ``modeling_longformer.create_bidirectional_mask`` is this module's row mask."""
    return getattr(modeling_longformer, NAME, None) is _row_mask


def _install() -> None:
    current = getattr(modeling_longformer, NAME, None)
    if current is _row_mask:
        return
    if current is not _ORIGINAL:
        raise LongifyError(
            f"fast attention: transformers' modeling_longformer.{NAME} was replaced by "
            f"{getattr(current, '__module__', '?')}.{getattr(current, '__qualname__', current)!s} after longify "
            "was imported; longify will not patch over it (use --attention hf, or undo the other patch)"
        )
    setattr(modeling_longformer, NAME, _row_mask)


def _restore_if_unused() -> None:
    """Put the original function back once no registered model is left (a foreign patch is left alone)."""
    if not _USERS and installed():
        setattr(modeling_longformer, NAME, _ORIGINAL)


def _forget(key: int, ref: weakref.ref[nn.Module]) -> None:
    """Weak-reference callback: the model registered under ``key`` was garbage-collected."""
    entry = _USERS.get(key)
    if entry is not None and entry[0] is ref:
        del _USERS[key]
    _restore_if_unused()


def enable_row_mask(model: nn.Module) -> None:
    """Serve ``model`` the row mask: register it and install the name patch (once per process).

    Raises LongifyError, before registering anything, when another library has replaced the function.
    """
    if _ORIGINAL is None:
        return  # this transformers has no such function: nothing to patch
    _install()
    configs = tuple(
        {
            id(c): c
            for c in (getattr(m, "config", None) for m in model.modules())
            if getattr(c, "model_type", None) == "longformer"
        }.values()
    )
    key = id(model)
    entry = _USERS.get(key)
    ref = (
        entry[0]
        if entry is not None and entry[0]() is model
        else weakref.ref(model, lambda r: _forget(key, r))
    )
    _USERS[key] = (ref, configs)


def release_row_mask(needs: Callable[[nn.Module], bool]) -> None:
    """Unregister every model for which ``needs(model)`` is False; restore the original if none is left."""
    for key, (ref, _) in tuple(_USERS.items()):
        model = ref()
        if model is None or not needs(model):
            _USERS.pop(key, None)
    _restore_if_unused()
