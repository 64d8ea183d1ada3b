"""Long targets: one module per way of lengthening an encoder (``longformer``, ``full``, ``bigbird``), each
behind :class:`longify.targets.base.Target`; ``TARGETS`` maps the names ``longify convert --target`` takes,
``target_of`` / ``model_target`` say which one a saved model belongs to (``longify.targets.registry``)."""

from __future__ import annotations

from longify.targets.base import Check, QAExtras, Target, Weights
from longify.targets.registry import (
    DEFAULT_TARGET,
    TARGET_NAMES,
    TARGETS,
    get_target,
    model_target,
    recorded_target,
    target_of,
)

__all__ = [
    "DEFAULT_TARGET",
    "TARGETS",
    "TARGET_NAMES",
    "Check",
    "QAExtras",
    "Target",
    "Weights",
    "get_target",
    "model_target",
    "recorded_target",
    "target_of",
]
