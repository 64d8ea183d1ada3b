"""The targets by name, and the target a saved model belongs to.

``target_of(config)``: the target whose checkpoint class a config names (``longformer``: Longformer;
``big_bird``: BigBird; a known family's own class: ``full``). ``model_target(path, config)``: the long target
a saved model *is*, or None for a short model: a Longformer or a BigBird always is one; a known family's
class only with a longify record saying it was made ``full`` (its ``conversion.json``, or the records of the
``pretrain`` / ``qa train`` run that wrote it; for a ``checkpoint-N``, its run folder's), since its
config alone cannot tell a long checkpoint from the short source it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longify.artifacts import CONVERSION_FILE, PRETRAIN_METRICS_FILE, RESULTS_FILE, RUN_FILE
from longify.checkpoint_files import checkpoint_step
from longify.errors import LongifyError
from longify.families import FAMILIES
from longify.targets.base import Target
from longify.targets.bigbird import BigBird
from longify.targets.full import Full
from longify.targets.longformer import Longformer

DEFAULT_TARGET = "longformer"
TARGETS: dict[str, Target] = {t.name: t for t in (Longformer(), Full(), BigBird())}
TARGET_NAMES: tuple[str, ...] = tuple(TARGETS)
# the records naming the target of the model beside them: a conversion, a run's record and results (a pretrain
# or qa train run folder, and what `longify export` copies of them)
_RECORDS = (CONVERSION_FILE, RUN_FILE, PRETRAIN_METRICS_FILE, RESULTS_FILE)
# the targets whose checkpoint class is their own (the others: the source family's), by that model_type
BY_MODEL_TYPE: dict[str, Target] = {t.model_type: t for t in TARGETS.values() if t.model_type is not None}
FAMILY_TARGET = next(t for t in TARGETS.values() if t.model_type is None)  # a known family's class: `full`


def get_target(name: str) -> Target:
    """The target called ``name``, or one line listing the known ones."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise LongifyError(f"--target: expected one of {', '.join(TARGETS)}, got {name!r}") from None


def target_of(config: Any) -> Target:
    """The target whose checkpoint class ``config`` names (``full`` for a known family's own class); any other
    model type is one line."""
    model_type = getattr(config, "model_type", None)
    if model_type in BY_MODEL_TYPE:
        return BY_MODEL_TYPE[model_type]
    if model_type in FAMILIES:
        return FAMILY_TARGET
    known = ", ".join([*BY_MODEL_TYPE, *sorted(FAMILIES)])
    raise LongifyError(f"config.json: model_type {model_type!r} is no long target's; expected one of {known}")


def recorded_target(path: str | Path) -> str | None:
    """The target longify recorded for the model in ``path``: its conversion.json, or the records of the run
    that saved it there (a ``checkpoint-N``: its run folder's); None without one."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    places = [folder, folder.parent] if checkpoint_step(folder) is not None else [folder]
    for place in places:
        for name in _RECORDS:
            value = _read_target(place / name)
            if value is not None:
                return value
    return None


def _read_target(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = record.get("target") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value in TARGETS else None


def model_target(path: str | Path, config: Any) -> Target | None:
    """The long target the model saved in ``path`` (with ``config``) is, or None for a short model (or one of a
    type no target knows)."""
    try:
        target = target_of(config)
    except LongifyError:
        return None
    if target.model_type is not None or recorded_target(path) == target.name:
        return target
    return None
