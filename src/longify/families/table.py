"""The README's family x target table, generated from the registry (a unit test checks the README's copy)."""

from __future__ import annotations

from longify.families import FAMILIES
from longify.families.base import TARGET_NAMES, Family


def cell(family: Family, target: str) -> str:
    """``exact`` (with the family's note), or ``refused: why``."""
    note = family.notes.get(target)
    if target in family.refusals:
        return f"refused: {note}" if note else "refused"
    return f"exact; {note}" if note else "exact"


def markdown() -> str:
    """One row per family, one column per target."""
    lines = [
        "| family | " + " | ".join(TARGET_NAMES) + " |",
        "|---|" + "---|" * len(TARGET_NAMES),
    ]
    for name, family in FAMILIES.items():
        lines.append(f"| `{name}` | " + " | ".join(cell(family, t) for t in TARGET_NAMES) + " |")
    return "\n".join(lines) + "\n"
