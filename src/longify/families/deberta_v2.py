"""DeBERTa-v2/v3 and mDeBERTa-v3: disentangled attention over relative positions (log buckets), and no
absolute table when ``position_biased_input`` is false. Only its own class computes that attention, so only
the ``full`` target converts it: the usable length is raised (``max_position_embeddings``, the tokenizer's
``model_max_length``) and the relative buckets are kept (``max_relative_positions`` pinned to the source's,
which the bucketing of every distance reads), so short inputs give exactly the source's outputs."""

from __future__ import annotations

from transformers import DebertaV2Tokenizer, PretrainedConfig

from longify.families.base import Family, Tiny, no_offset
from longify.families.bert import HEAD as BERT_HEAD

_L = "deberta.encoder.layer.{}."
_C = "encoder.layer.{}."
WEIGHTS = {
    "deberta.embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "deberta.embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "deberta.embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "deberta.embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "deberta.embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
    "deberta.embeddings.embed_proj.weight": "embeddings.projection.weight",
    _L + "attention.self.query_proj.weight": _C + "attention.self.query.weight",
    _L + "attention.self.query_proj.bias": _C + "attention.self.query.bias",
    _L + "attention.self.key_proj.weight": _C + "attention.self.key.weight",
    _L + "attention.self.key_proj.bias": _C + "attention.self.key.bias",
    _L + "attention.self.value_proj.weight": _C + "attention.self.value.weight",
    _L + "attention.self.value_proj.bias": _C + "attention.self.value.bias",
    _L + "attention.self.pos_key_proj.weight": "relative.layer.{}.pos_key.weight",  # share_att_key false
    _L + "attention.self.pos_key_proj.bias": "relative.layer.{}.pos_key.bias",
    _L + "attention.self.pos_query_proj.weight": "relative.layer.{}.pos_query.weight",
    _L + "attention.self.pos_query_proj.bias": "relative.layer.{}.pos_query.bias",
    _L + "attention.output.dense.weight": _C + "attention.output.dense.weight",
    _L + "attention.output.dense.bias": _C + "attention.output.dense.bias",
    _L + "attention.output.LayerNorm.weight": _C + "attention.output.LayerNorm.weight",
    _L + "attention.output.LayerNorm.bias": _C + "attention.output.LayerNorm.bias",
    _L + "intermediate.dense.weight": _C + "intermediate.dense.weight",
    _L + "intermediate.dense.bias": _C + "intermediate.dense.bias",
    _L + "output.dense.weight": _C + "output.dense.weight",
    _L + "output.dense.bias": _C + "output.dense.bias",
    _L + "output.LayerNorm.weight": _C + "output.LayerNorm.weight",
    _L + "output.LayerNorm.bias": _C + "output.LayerNorm.bias",
    "deberta.encoder.rel_embeddings.weight": "relative.embeddings.weight",  # not canonical: full only
    "deberta.encoder.LayerNorm.weight": "relative.LayerNorm.weight",
    "deberta.encoder.LayerNorm.bias": "relative.LayerNorm.bias",
    "deberta.encoder.conv.conv.weight": "relative.conv.weight",
    "deberta.encoder.conv.conv.bias": "relative.conv.bias",
    "deberta.encoder.conv.LayerNorm.weight": "relative.conv.LayerNorm.weight",
    "deberta.encoder.conv.LayerNorm.bias": "relative.conv.LayerNorm.bias",
    # the MLM head: BERT's names (legacy, the released checkpoints), or lm_predictions.* (legacy false)
    **BERT_HEAD,
    "lm_predictions.lm_head.dense.weight": "lm_head.v3.dense.weight",
    "lm_predictions.lm_head.dense.bias": "lm_head.v3.dense.bias",
    "lm_predictions.lm_head.LayerNorm.weight": "lm_head.v3.layer_norm.weight",
    "lm_predictions.lm_head.LayerNorm.bias": "lm_head.v3.layer_norm.bias",
    "lm_predictions.lm_head.bias": "lm_head.v3.bias",
}
_WHY = (
    "its attention is disentangled over relative positions (content-to-position and position-to-content "
    "terms), which {} cannot express; use --target full, which keeps DebertaV2ForMaskedLM"
)


def lengthen(config: PretrainedConfig, source: PretrainedConfig) -> None:
    """Keep the relative buckets: HF derives ``max_relative_positions`` from ``max_position_embeddings``
    when it is unset, and the log bucketing of every distance depends on it."""
    if getattr(source, "relative_attention", False) and getattr(source, "max_relative_positions", -1) < 1:
        config.max_relative_positions = int(source.max_position_embeddings)


FAMILY = Family(
    model_type="deberta-v2",
    prefix="deberta.",
    weights=WEIGHTS,
    position_offset=no_offset,
    head_activation=None,
    dropped=("deberta.pooler.", "pooler."),
    refusals={"longformer": _WHY.format("Longformer"), "bigbird": _WHY.format("BigBird")},
    notes={
        "longformer": "relative attention",
        "full": "relative buckets kept",
        "bigbird": "relative attention",
    },
    lengthen=lengthen,
    tiny=Tiny(
        DebertaV2Tokenizer,
        canonical={"type_vocab_size": 0, "layer_norm_eps": 1e-7},
        own=lambda values: {  # mDeBERTa-v3's shape: relative positions in log buckets, no absolute table
            "relative_attention": True,
            "position_biased_input": False,
            "position_buckets": values["max_position_embeddings"] // 4,
            "max_relative_positions": -1,
            "pos_att_type": ["p2c", "c2p"],
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
        },
        tokenizer_pieces="▁",
    ),
)
