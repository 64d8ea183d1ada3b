"""Short encoder -> standard HF Longformer, verified against its source."""

from longify.convert.convert import convert
from longify.convert.plan import ConvertOptions, parse_windows
from longify.families import FAMILIES, get_family
from longify.targets.positions import POSITION_INITS, extend_positions

__all__ = [
    "FAMILIES",
    "POSITION_INITS",
    "ConvertOptions",
    "convert",
    "extend_positions",
    "get_family",
    "parse_windows",
]
