"""The source families, now one module each in :mod:`longify.families` (explicit key and config maps onto
the canonical encoder the targets build from); re-exported here for the targets and the stages."""

from longify.families import (
    CONVERTIBLE,
    FAMILIES,
    LONGFORMER,
    Family,
    get_family,
    position_offset,
    usable_positions,
)
from longify.families.bert import HEAD

# Longformer's MLM head key -> the BERT head key it comes from.
BERT_HEAD = {canonical: bert for bert, canonical in HEAD.items()}

__all__ = [
    "BERT_HEAD",
    "CONVERTIBLE",
    "FAMILIES",
    "LONGFORMER",
    "Family",
    "get_family",
    "position_offset",
    "usable_positions",
]
