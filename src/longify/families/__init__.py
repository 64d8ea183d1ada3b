"""The one registry of source families: every module of this package but ``base`` and ``table`` defines
``FAMILY`` (one ``config.model_type``, its explicit key and config maps onto the canonical encoder, the
targets it refuses and why, how a tiny one is built). Adding a family is adding one module here.

``FAMILIES`` maps model types to them; ``position_offset`` and ``usable_positions`` read a config's position
numbering (``longformer``'s too, for the stages after a conversion)."""

from __future__ import annotations

import importlib
import pkgutil

from transformers import PretrainedConfig

from longify.errors import LongifyError
from longify.families.base import CANONICAL, TARGET_NAMES, Family, pad_offset

_NOT_FAMILIES = {"base", "table"}


def _discover() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_FAMILIES:
            continue
        family = importlib.import_module(f"{__name__}.{info.name}").FAMILY
        found[family.model_type] = family
    return found


FAMILIES: dict[str, Family] = _discover()
LONGFORMER = "longformer"
CONVERTIBLE: tuple[str, ...] = tuple(sorted(FAMILIES))  # model types `longify convert` takes


def get_family(model_type: str | None) -> Family:
    """The family of ``model_type``, or a clear error listing the supported ones."""
    try:
        return FAMILIES[model_type or ""]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise LongifyError(
            f"config.json: model_type {model_type!r} is not supported; supported: {supported}"
        ) from None


def position_offset(config: PretrainedConfig, default: int | None = None) -> int:
    """Rows of the position table before position 0: ``pad_token_id + 1`` for Longformer and RoBERTa-style
    models, 0 for BERT-style ones; ``default`` for a model type no family knows (else a one-line error)."""
    model_type = getattr(config, "model_type", None)
    if model_type == LONGFORMER:
        return pad_offset(config)
    if model_type not in FAMILIES and default is not None:
        return default
    return get_family(model_type).position_offset(config)


def usable_positions(config: PretrainedConfig, default_offset: int | None = None) -> int:
    """Tokens the model's position table holds (``max_position_embeddings`` less its offset)."""
    return int(config.max_position_embeddings) - position_offset(config, default_offset)


__all__ = [
    "CANONICAL",
    "CONVERTIBLE",
    "FAMILIES",
    "LONGFORMER",
    "TARGET_NAMES",
    "Family",
    "get_family",
    "position_offset",
    "usable_positions",
]
