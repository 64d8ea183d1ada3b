"""data2vec-text: RoBERTa's layout under ``data2vec_text.``, RoBERTa's numbering and tokenizer."""

from __future__ import annotations

from longify.families.base import HEAD, Family, Tiny, pad_offset, prefixed
from longify.families.roberta import byte_level_bpe

FAMILY = Family(
    model_type="data2vec-text",
    prefix="data2vec_text.",
    weights={**prefixed("data2vec_text."), **{key: key for key in HEAD}},
    position_offset=pad_offset,
    tiny=Tiny(byte_level_bpe, tokenizer_pieces="Ġ"),
)
