"""Long targets: one module per way of lengthening an encoder (``longformer``, ``full``, ``bigbird``), each
behind :class:`longify.targets.base.Target`; ``TARGETS`` maps the names ``longify convert --target`` takes."""

from __future__ import annotations

from longify.errors import LongifyError
from longify.targets.base import Check, QAExtras, Target, Weights
from longify.targets.bigbird import BigBird
from longify.targets.full import Full
from longify.targets.longformer import Longformer

DEFAULT_TARGET = "longformer"
TARGETS: dict[str, Target] = {t.name: t for t in (Longformer(), Full(), BigBird())}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)


def get_target(name: str) -> Target:
    """The target called ``name``, or one line listing the known ones."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise LongifyError(f"--target: expected one of {', '.join(TARGETS)}, got {name!r}") from None


__all__ = [
    "DEFAULT_TARGET",
    "TARGETS",
    "TARGET_NAMES",
    "Check",
    "QAExtras",
    "Target",
    "Weights",
    "get_target",
]
