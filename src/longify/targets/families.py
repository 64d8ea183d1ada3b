"""One small adapter per source ``config.model_type``: how its checkpoint maps onto a Longformer.

Every supported family is a post-LayerNorm BERT-style encoder whose layers have exactly Longformer's
parameters (query/key/value, attention output, intermediate, output). An adapter only says:

- the prefix of the encoder in the source MaskedLM checkpoint (``roberta.``, ``bert.``, ...);
- how the source's MLM head keys are named (RoBERTa's ``lm_head.*`` or BERT's ``cls.predictions.*``);
- the position offset: RoBERTa-style models number positions from ``pad_token_id + 1``; BERT from 0.
  Longformer always numbers from ``pad_token_id + 1``, so BERT's table is shifted on conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import PretrainedConfig

from longify.errors import LongifyError

# Longformer's MLM head key -> the BERT head key it comes from.
BERT_HEAD = {
    "lm_head.dense.weight": "cls.predictions.transform.dense.weight",
    "lm_head.dense.bias": "cls.predictions.transform.dense.bias",
    "lm_head.layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "lm_head.layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "lm_head.decoder.weight": "cls.predictions.decoder.weight",
    "lm_head.decoder.bias": "cls.predictions.decoder.bias",
    "lm_head.bias": "cls.predictions.bias",
}


def _roberta_offset(config: PretrainedConfig) -> int:
    return int(config.pad_token_id) + 1


def _bert_offset(config: PretrainedConfig) -> int:
    return 0


@dataclass(frozen=True)
class Family:
    """How one source model_type maps onto ``LongformerForMaskedLM``."""

    model_type: str
    prefix: str
    position_offset: Callable[[PretrainedConfig], int]
    head_keys: dict[str, str] | None = None  # None: the head keys are already Longformer's (lm_head.*)
    # Source keys that have no Longformer counterpart and are dropped on purpose.
    dropped_prefixes: tuple[str, ...] = ()

    def source_key(self, long_key: str) -> str:
        """The source checkpoint key that fills ``long_key`` of a LongformerForMaskedLM."""
        if long_key.startswith("longformer."):
            return self.prefix + long_key[len("longformer.") :]
        if self.head_keys is not None:
            return self.head_keys[long_key]
        return long_key

    def check(self, config: PretrainedConfig) -> None:
        """Refuse source configs whose architecture Longformer cannot express."""
        kind = getattr(config, "position_embedding_type", "absolute") or "absolute"
        if kind != "absolute":
            raise LongifyError(
                f"config.json: position_embedding_type is {kind!r}; only 'absolute' positions can be extended"
            )
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            raise LongifyError("config.json: is_decoder/add_cross_attention is set; expected an encoder")


_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert"}

FAMILIES: dict[str, Family] = {
    **{name: Family(name, "roberta.", _roberta_offset) for name in sorted(_ROBERTA_LIKE)},
    "data2vec-text": Family("data2vec-text", "data2vec_text.", _roberta_offset),
    "bert": Family(
        "bert",
        "bert.",
        _bert_offset,
        head_keys=BERT_HEAD,
        dropped_prefixes=("bert.pooler.", "cls.seq_relationship."),
    ),
}


LONGFORMER = "longformer"
CONVERTIBLE: tuple[str, ...] = tuple(sorted(FAMILIES))  # model types `longify convert` takes


def position_offset(config: PretrainedConfig, default: int | None = None) -> int:
    """Rows of the position table before position 0: ``pad_token_id + 1`` for Longformer and RoBERTa-style
    models, 0 for BERT; ``default`` for a model type no adapter knows (else a one-line error)."""
    model_type = getattr(config, "model_type", None)
    if model_type == LONGFORMER:
        return _roberta_offset(config)
    if model_type not in FAMILIES and default is not None:
        return default
    return get_family(model_type).position_offset(config)


def usable_positions(config: PretrainedConfig, default_offset: int | None = None) -> int:
    """Tokens the model's position table holds (``max_position_embeddings`` less its offset)."""
    return int(config.max_position_embeddings) - position_offset(config, default_offset)


def get_family(model_type: str | None) -> Family:
    """The adapter for ``model_type``, or a clear error listing the supported ones."""
    try:
        return FAMILIES[model_type or ""]
    except KeyError:
        supported = ", ".join(sorted(FAMILIES))
        raise LongifyError(
            f"config.json: model_type {model_type!r} is not supported; supported: {supported}"
        ) from None
