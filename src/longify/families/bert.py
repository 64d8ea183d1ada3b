"""BERT: the canonical encoder under ``bert.``, positions numbered from 0, the MLM head ``cls.predictions.*``
(its transform applies ``hidden_act``); the pooler and next-sentence head are dropped."""

from __future__ import annotations

from transformers import BertTokenizer

from longify.families.base import Family, Tiny, no_offset, prefixed

HEAD = {
    "cls.predictions.transform.dense.weight": "lm_head.dense.weight",
    "cls.predictions.transform.dense.bias": "lm_head.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "lm_head.layer_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "lm_head.layer_norm.bias",
    "cls.predictions.decoder.weight": "lm_head.decoder.weight",
    "cls.predictions.decoder.bias": "lm_head.decoder.bias",
    "cls.predictions.bias": "lm_head.bias",
}

FAMILY = Family(
    model_type="bert",
    prefix="bert.",
    weights={**prefixed("bert."), **HEAD},
    position_offset=no_offset,
    head_activation=None,
    dropped=("bert.pooler.", "cls.seq_relationship."),
    tiny=Tiny(
        BertTokenizer,
        canonical={"type_vocab_size": 2, "layer_norm_eps": 1e-12, "bos_token_id": None, "eos_token_id": None},
    ),
)
