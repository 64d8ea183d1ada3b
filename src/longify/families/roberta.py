"""RoBERTa: the canonical encoder itself under ``roberta.``; positions numbered from ``pad_token_id + 1``."""

from __future__ import annotations

from transformers import RobertaTokenizer

from longify.families.base import HEAD, Family, Tiny, pad_offset, prefixed

_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}


def byte_level_bpe() -> RobertaTokenizer:
    """An empty byte-level BPE tokenizer with RoBERTa's special ids (trained by the tiny builder)."""
    return RobertaTokenizer(vocab=dict(_SPECIALS), merges=[])


# The MLM head keeps its canonical names (lm_head.*).
WEIGHTS = {**prefixed("roberta."), **{key: key for key in HEAD}}

FAMILY = Family(
    model_type="roberta",
    prefix="roberta.",
    weights=WEIGHTS,
    position_offset=pad_offset,
    tiny=Tiny(byte_level_bpe, tokenizer_pieces="Ġ"),
)
