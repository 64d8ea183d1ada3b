"""DistilBERT (and multilingual DistilBERT): BERT's encoder under other names, no token types, positions
numbered from 0, the head ``vocab_transform`` -> activation -> ``vocab_layer_norm`` -> ``vocab_projector``."""

from __future__ import annotations

from transformers import DistilBertTokenizer, PretrainedConfig

from longify.families.base import Family, Tiny, no_offset

WEIGHTS = {
    "distilbert.embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "distilbert.embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "distilbert.embeddings.LayerNorm.weight": "embeddings.LayerNorm.weight",
    "distilbert.embeddings.LayerNorm.bias": "embeddings.LayerNorm.bias",
    "distilbert.transformer.layer.{}.attention.q_lin.weight": "encoder.layer.{}.attention.self.query.weight",
    "distilbert.transformer.layer.{}.attention.q_lin.bias": "encoder.layer.{}.attention.self.query.bias",
    "distilbert.transformer.layer.{}.attention.k_lin.weight": "encoder.layer.{}.attention.self.key.weight",
    "distilbert.transformer.layer.{}.attention.k_lin.bias": "encoder.layer.{}.attention.self.key.bias",
    "distilbert.transformer.layer.{}.attention.v_lin.weight": "encoder.layer.{}.attention.self.value.weight",
    "distilbert.transformer.layer.{}.attention.v_lin.bias": "encoder.layer.{}.attention.self.value.bias",
    "distilbert.transformer.layer.{}.attention.out_lin.weight": "encoder.layer.{}.attention.output.dense.weight",
    "distilbert.transformer.layer.{}.attention.out_lin.bias": "encoder.layer.{}.attention.output.dense.bias",
    "distilbert.transformer.layer.{}.sa_layer_norm.weight": "encoder.layer.{}.attention.output.LayerNorm.weight",
    "distilbert.transformer.layer.{}.sa_layer_norm.bias": "encoder.layer.{}.attention.output.LayerNorm.bias",
    "distilbert.transformer.layer.{}.ffn.lin1.weight": "encoder.layer.{}.intermediate.dense.weight",
    "distilbert.transformer.layer.{}.ffn.lin1.bias": "encoder.layer.{}.intermediate.dense.bias",
    "distilbert.transformer.layer.{}.ffn.lin2.weight": "encoder.layer.{}.output.dense.weight",
    "distilbert.transformer.layer.{}.ffn.lin2.bias": "encoder.layer.{}.output.dense.bias",
    "distilbert.transformer.layer.{}.output_layer_norm.weight": "encoder.layer.{}.output.LayerNorm.weight",
    "distilbert.transformer.layer.{}.output_layer_norm.bias": "encoder.layer.{}.output.LayerNorm.bias",
    "vocab_transform.weight": "lm_head.dense.weight",
    "vocab_transform.bias": "lm_head.dense.bias",
    "vocab_layer_norm.weight": "lm_head.layer_norm.weight",
    "vocab_layer_norm.bias": "lm_head.layer_norm.bias",
    "vocab_projector.weight": "lm_head.decoder.weight",
    "vocab_projector.bias": "lm_head.decoder.bias",
}
CONFIG = {
    "hidden_size": "dim",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "intermediate_size": "hidden_dim",
    "hidden_act": "activation",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "attention_dropout",
}


def lengthen(config: PretrainedConfig, source: PretrainedConfig) -> None:
    """The extended table is a learned one: HF would otherwise rebuild a sinusoidal table on load."""
    config.sinusoidal_pos_embds = False


FAMILY = Family(
    model_type="distilbert",
    prefix="distilbert.",
    weights=WEIGHTS,
    position_offset=no_offset,
    config=CONFIG,
    constants={"type_vocab_size": 1, "layer_norm_eps": 1e-12},  # its LayerNorms hard-wire 1e-12
    absent={
        "embeddings.token_type_embeddings.weight": "no token types in distilbert: zeros (type 0 adds nothing)"
    },
    head_activation=None,  # its head applies config.activation
    tied={"lm_head.bias": "lm_head.decoder.bias"},
    notes={"longformer": "token types zeros", "bigbird": "token types zeros"},
    lengthen=lengthen,
    tiny=Tiny(DistilBertTokenizer, canonical={"bos_token_id": None, "eos_token_id": None}),
)
