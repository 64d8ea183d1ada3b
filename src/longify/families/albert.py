"""ALBERT: one set of layer weights shared by every layer (``albert_layer_groups``) over factorised
embeddings (``embedding_size`` projected to the hidden size): only its own class can hold that, so only the
``full`` target converts it. Positions from 0; the MLM head ``predictions.*`` applies ``hidden_act``."""

from __future__ import annotations

from transformers import AlbertTokenizer

from longify.families.base import Family, Tiny, no_offset

_LAYER = "albert.encoder.albert_layer_groups.{}.albert_layers.{}."
_SHARED = "shared.group.{}.layer.{}."  # not canonical: the shared layers have no per-layer place
WEIGHTS = {
    "albert.embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "albert.embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "albert.embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "albert.embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "albert.embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
    "albert.encoder.embedding_hidden_mapping_in.weight": "embeddings.projection.weight",
    "albert.encoder.embedding_hidden_mapping_in.bias": "embeddings.projection.bias",
    _LAYER + "attention.query.weight": _SHARED + "attention.self.query.weight",
    _LAYER + "attention.query.bias": _SHARED + "attention.self.query.bias",
    _LAYER + "attention.key.weight": _SHARED + "attention.self.key.weight",
    _LAYER + "attention.key.bias": _SHARED + "attention.self.key.bias",
    _LAYER + "attention.value.weight": _SHARED + "attention.self.value.weight",
    _LAYER + "attention.value.bias": _SHARED + "attention.self.value.bias",
    _LAYER + "attention.dense.weight": _SHARED + "attention.output.dense.weight",
    _LAYER + "attention.dense.bias": _SHARED + "attention.output.dense.bias",
    _LAYER + "attention.LayerNorm.weight": _SHARED + "attention.output.LayerNorm.weight",
    _LAYER + "attention.LayerNorm.bias": _SHARED + "attention.output.LayerNorm.bias",
    _LAYER + "ffn.weight": _SHARED + "intermediate.dense.weight",
    _LAYER + "ffn.bias": _SHARED + "intermediate.dense.bias",
    _LAYER + "ffn_output.weight": _SHARED + "output.dense.weight",
    _LAYER + "ffn_output.bias": _SHARED + "output.dense.bias",
    _LAYER + "full_layer_layer_norm.weight": _SHARED + "output.LayerNorm.weight",
    _LAYER + "full_layer_layer_norm.bias": _SHARED + "output.LayerNorm.bias",
    "predictions.dense.weight": "lm_head.dense.weight",
    "predictions.dense.bias": "lm_head.dense.bias",
    "predictions.LayerNorm.weight": "lm_head.layer_norm.weight",
    "predictions.LayerNorm.bias": "lm_head.layer_norm.bias",
    "predictions.decoder.weight": "lm_head.decoder.weight",
    "predictions.decoder.bias": "lm_head.decoder.bias",
    "predictions.bias": "lm_head.bias",
}
_WHY = (
    "its layers share one set of weights and its embeddings are factorised (embedding_size -> hidden_size), "
    "which {} cannot express; use --target full, which keeps AlbertForMaskedLM"
)

FAMILY = Family(
    model_type="albert",
    prefix="albert.",
    weights=WEIGHTS,
    position_offset=no_offset,
    head_activation=None,
    dropped=("albert.pooler.", "sop_classifier."),
    refusals={"longformer": _WHY.format("Longformer"), "bigbird": _WHY.format("BigBird")},
    notes={"longformer": "shared layers", "bigbird": "shared layers"},
    tiny=Tiny(
        AlbertTokenizer,
        canonical={"type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu_new"},
        own=lambda values: {"embedding_size": values["hidden_size"] // 2, "num_hidden_groups": 1},
        tokenizer_pieces="▁",
    ),
)
