"""The range of a run's seed: numpy's (``np.random.seed``, which ``transformers.set_seed`` calls, refuses
anything outside it with a traceback)."""

from __future__ import annotations

from typing import Any

from longify.errors import LongifyError

SEED_MAX = 2**32 - 1
EXPECTED = f"expected an integer from 0 to {SEED_MAX} (numpy's seed range)"


def seed_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX


def check_seed(flag: str, value: Any) -> None:
    """One line naming ``flag`` when ``value`` is not a seed numpy accepts."""
    if value is not None and not seed_ok(value):
        raise LongifyError(f"{flag}: {EXPECTED}, got {value}")
