"""Short encoder -> standard HF Longformer, verified against its source."""

from longify.convert.convert import convert, parse_windows
from longify.convert.families import FAMILIES, get_family
from longify.convert.positions import POSITION_INITS, extend_positions

__all__ = ["FAMILIES", "POSITION_INITS", "convert", "extend_positions", "get_family", "parse_windows"]
