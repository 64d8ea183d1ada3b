"""The position-table inits, now in :mod:`longify.targets.positions` (layer 6, used by every target);
re-exported here for the conversion's callers."""

from longify.targets.positions import POSITION_INITS, PositionInit, extend_positions

__all__ = ["POSITION_INITS", "PositionInit", "extend_positions"]
