"""The source-family adapters, now in :mod:`longify.targets.families` (layer 6, under every target);
re-exported here for the stages that import them from the conversion."""

from longify.targets.families import (
    CONVERTIBLE,
    FAMILIES,
    LONGFORMER,
    Family,
    get_family,
    position_offset,
    usable_positions,
)

__all__ = [
    "CONVERTIBLE",
    "FAMILIES",
    "LONGFORMER",
    "Family",
    "get_family",
    "position_offset",
    "usable_positions",
]
