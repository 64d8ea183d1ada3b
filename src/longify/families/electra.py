"""ELECTRA: the generator (``ElectraForMaskedLM``) and the discriminator (``ElectraForPreTraining``, a bare
encoder for masked-LM purposes: its MLM head is new). BERT's encoder under ``electra.``, positions from 0;
embeddings of ``embedding_size`` projected to the hidden size (``embeddings_project``) where they differ,
which Longformer and BigBird have no place for; the generator head applies gelu."""

from __future__ import annotations

from transformers import ElectraTokenizer, PretrainedConfig

from longify.families.base import Family, Tiny, no_offset, prefixed

WEIGHTS = {
    **prefixed("electra."),
    "electra.embeddings_project.weight": "embeddings.projection.weight",  # not canonical: full target only
    "electra.embeddings_project.bias": "embeddings.projection.bias",
    "generator_predictions.dense.weight": "lm_head.dense.weight",
    "generator_predictions.dense.bias": "lm_head.dense.bias",
    "generator_predictions.LayerNorm.weight": "lm_head.layer_norm.weight",
    "generator_predictions.LayerNorm.bias": "lm_head.layer_norm.bias",
    "generator_lm_head.weight": "lm_head.decoder.weight",
    "generator_lm_head.bias": "lm_head.decoder.bias",
}
_PROJECTED = {"longformer": "Longformer", "bigbird": "BigBird"}


def refuse(target: str, config: PretrainedConfig) -> str | None:
    """Longformer and BigBird embed at the hidden size: an ELECTRA that projects its embeddings has no map."""
    if target not in _PROJECTED or config.embedding_size == config.hidden_size:
        return None
    return (
        f"its embedding_size {config.embedding_size} differs from its hidden_size {config.hidden_size} and "
        f"{_PROJECTED[target]} has no embedding projection (electra.embeddings_project); use --target full, "
        "which keeps ElectraForMaskedLM"
    )


FAMILY = Family(
    model_type="electra",
    prefix="electra.",
    weights=WEIGHTS,
    position_offset=no_offset,
    tied={"lm_head.bias": "lm_head.decoder.bias"},
    dropped=("discriminator_predictions.",),
    refuse=refuse,
    notes={
        "longformer": "if embedding_size = hidden_size, else refused (no embedding projection)",
        "bigbird": "if embedding_size = hidden_size, else refused (no embedding projection)",
    },
    tiny=Tiny(
        ElectraTokenizer,
        canonical={"type_vocab_size": 2, "layer_norm_eps": 1e-12, "bos_token_id": None, "eos_token_id": None},
        own=lambda values: {"embedding_size": values["hidden_size"] // 2},  # a generator's shape
    ),
)
