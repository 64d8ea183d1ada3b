"""MPNet (and the sentence-transformers models built on it, all-mpnet-base-v2 among them: a bare ``MPNetModel``,
whose MLM head is new): absolute positions numbered RoBERTa-style from ``padding_idx + 1``, where
``MPNetEmbeddings`` hard-wires ``padding_idx`` 1 (whatever ``pad_token_id`` says), plus one learned
relative-position bias (``encoder.relative_attention_bias``, log buckets) that every layer adds to its
attention scores; no token types. Only its own class adds that bias, so only the ``full`` target converts it:
the absolute table is extended and the bias kept (its buckets do not depend on the table's length), so short
inputs give exactly the source's outputs."""

from __future__ import annotations

from transformers import MPNetTokenizer, PretrainedConfig

from longify.families.base import Family, Tiny

_L = "mpnet.encoder.layer.{}."
_C = "encoder.layer.{}."
WEIGHTS = {
    "mpnet.embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "mpnet.embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "mpnet.embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "mpnet.embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
    _L + "attention.attn.q.weight": _C + "attention.self.query.weight",
    _L + "attention.attn.q.bias": _C + "attention.self.query.bias",
    _L + "attention.attn.k.weight": _C + "attention.self.key.weight",
    _L + "attention.attn.k.bias": _C + "attention.self.key.bias",
    _L + "attention.attn.v.weight": _C + "attention.self.value.weight",
    _L + "attention.attn.v.bias": _C + "attention.self.value.bias",
    _L + "attention.attn.o.weight": _C + "attention.output.dense.weight",
    _L + "attention.attn.o.bias": _C + "attention.output.dense.bias",
    _L + "attention.LayerNorm.weight": _C + "attention.output.LayerNorm.weight",
    _L + "attention.LayerNorm.bias": _C + "attention.output.LayerNorm.bias",
    _L + "intermediate.dense.weight": _C + "intermediate.dense.weight",
    _L + "intermediate.dense.bias": _C + "intermediate.dense.bias",
    _L + "output.dense.weight": _C + "output.dense.weight",
    _L + "output.dense.bias": _C + "output.dense.bias",
    _L + "output.LayerNorm.weight": _C + "output.LayerNorm.weight",
    _L + "output.LayerNorm.bias": _C + "output.LayerNorm.bias",
    "mpnet.encoder.relative_attention_bias.weight": "relative.attention_bias.weight",  # not canonical: full only
    # the MLM head: RoBERTa's names (dense -> gelu -> layer_norm -> decoder; lm_head.bias is the decoder's)
    "lm_head.dense.weight": "lm_head.dense.weight",
    "lm_head.dense.bias": "lm_head.dense.bias",
    "lm_head.layer_norm.weight": "lm_head.layer_norm.weight",
    "lm_head.layer_norm.bias": "lm_head.layer_norm.bias",
    "lm_head.decoder.weight": "lm_head.decoder.weight",
    "lm_head.decoder.bias": "lm_head.decoder.bias",
    "lm_head.bias": "lm_head.bias",
}
PADDING_IDX = 1  # MPNetEmbeddings.padding_idx: hard-wired, not read from the config
_SPECIALS = {"<s>": 0, "<pad>": PADDING_IDX, "</s>": 2, "[UNK]": 3, "<mask>": 4}  # microsoft/mpnet-base's ids
_WHY = (
    "its attention adds a learned relative-position bias (relative_attention_bias, shared by every layer), "
    "which {} cannot express; use --target full, which keeps MPNetForMaskedLM"
)


def position_offset(config: PretrainedConfig) -> int:
    """Positions from ``padding_idx + 1`` = 2, whatever the config's ``pad_token_id``."""
    return PADDING_IDX + 1


def wordpiece() -> MPNetTokenizer:
    """An empty WordPiece tokenizer with MPNet's special ids (``<pad>`` 1: the padding the model assumes)."""
    return MPNetTokenizer(vocab=dict(_SPECIALS))


FAMILY = Family(
    model_type="mpnet",
    prefix="mpnet.",
    weights=WEIGHTS,
    position_offset=position_offset,
    constants={"type_vocab_size": 0},  # no token-type table
    dropped=("mpnet.pooler.", "pooler."),
    refusals={"longformer": _WHY.format("Longformer"), "bigbird": _WHY.format("BigBird")},
    notes={
        "longformer": "relative attention bias",
        "full": "relative bias kept",
        "bigbird": "relative attention bias",
    },
    tiny=Tiny(wordpiece),
)
