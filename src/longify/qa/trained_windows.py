"""The windows a QA model was fine-tuned with, read back from its ``qa train`` record, so that ``qa evaluate``
and ``qa predict`` cut contexts the way the model was trained (not in 384-token windows by default)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from longify.artifacts import RUN_FILE
from longify.runargs import KEY

logger = logging.getLogger(__name__)

WINDOW_FLAGS = ("max_seq_length", "doc_stride", "max_query_length")


def trained_windows(model_dir: str | Path) -> dict[str, int]:
    """``{"max_seq_length": .., "doc_stride": .., "max_query_length": ..}`` recorded by the ``qa train`` run
    that wrote ``model_dir`` (its ``longify_run.json``); empty for any other model (or an unreadable record)."""
    try:
        defining = json.loads((Path(model_dir) / RUN_FILE).read_text(encoding="utf-8")).get(KEY)
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(defining, dict) or "--doc_stride" not in defining:  # not a qa train run
        return {}
    out = {}
    for name in WINDOW_FLAGS:
        value = defining.get(f"--{name}")
        lowest = 0 if name == "doc_stride" else 1
        if isinstance(value, int) and not isinstance(value, bool) and value >= lowest:
            out[name] = value
    return out


def log_windows_taken(taken: dict[str, int], model_dir: str | Path) -> None:
    """One log line naming the windows taken from the model's record."""
    if taken:
        logger.info(
            "%s: as %s was trained (its %s); pass the flags to override",
            ", ".join(f"--{name} {value}" for name, value in taken.items()),
            model_dir,
            RUN_FILE,
        )
