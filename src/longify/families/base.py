"""What one source family is: an explicit map from its checkpoint onto one canonical encoder.

The canonical encoder is a post-LayerNorm BERT-style encoder with RoBERTa's names and no model prefix
(``CANONICAL``: ``embeddings.*``, ``encoder.layer.{}.*``, and the MLM head ``lm_head.*``); the Longformer and
BigBird targets build from it. A family says, in literal maps (litgpt's ``convert_hf_checkpoint.py`` style):

- ``weights``: each key of its ``*ForMaskedLM`` checkpoint (``{}``: a layer index) -> its canonical key
  (``dropped``: key prefixes left out on purpose, e.g. a pooler a masked-LM model never uses). Keys outside ``CANONICAL``
  (ELECTRA's embedding projection, ALBERT's shared layers, DeBERTa's relative embeddings) have no place in
  the Longformer/BigBird layout: those families refuse those targets (``refuse``);
- ``config``: canonical config field -> its own field name (DistilBERT's ``dim``, ``n_layers``, ...);
  ``constants``: canonical fields it has no field for, with the value its code hard-wires;
- ``absent``: canonical tensors it lacks, filled with zeros where a target has them (DistilBERT's token
  types: adding a zero row changes nothing), each with the reason conversion.json records;
- which targets it refuses and why (``refusals``, or ``refuse`` when it depends on the config), how the
  ``full`` target raises its length (``lengthen``), and how the tests build a tiny one (``tiny``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transformers import PretrainedConfig

from longify.errors import LongifyError

LAYER = re.compile(r"\.(\d+)(?=\.)")  # a layer (or group) index inside a key

# The canonical encoder's keys ({}: layer index): RoBERTa's, without the "roberta." prefix.
EMBEDDINGS = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
)
LAYER_KEYS = tuple(
    f"encoder.layer.{{}}.{module}.{param}"
    for module in (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "attention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    )
    for param in ("weight", "bias")
)
HEAD = (
    "lm_head.dense.weight",
    "lm_head.dense.bias",
    "lm_head.layer_norm.weight",
    "lm_head.layer_norm.bias",
    "lm_head.decoder.weight",
    "lm_head.decoder.bias",
    "lm_head.bias",
)
CANONICAL = (*EMBEDDINGS, *LAYER_KEYS, *HEAD)
TOKEN_TYPES = "embeddings.token_type_embeddings.weight"
# Canonical config fields (what the Longformer/BigBird configs are built from).
CONFIG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
)
# what a target's config copies from the source's canonical config (its own positions aside)
CARRIED = tuple(name for name in CONFIG_FIELDS if name != "max_position_embeddings")
TARGET_NAMES = ("longformer", "full", "bigbird")  # the table's columns (longify.targets.TARGETS, in order)


def prefixed(prefix: str) -> dict[str, str]:
    """The map of a family whose encoder is the canonical one under ``prefix`` (RoBERTa, BERT, ...)."""
    return {prefix + key: key for key in (*EMBEDDINGS, *LAYER_KEYS)}


def pad_offset(config: PretrainedConfig) -> int:
    """RoBERTa-style position numbering: from ``pad_token_id + 1``."""
    return int(config.pad_token_id) + 1


def no_offset(config: PretrainedConfig) -> int:
    """BERT-style position numbering: from 0."""
    return 0


@dataclass(frozen=True)
class Tiny:
    """How the tests and the demo build a tiny one: the tokenizer class trained on the spot, the canonical
    config values that differ from RoBERTa's tiny ones (``canonical``), and the family's own fields
    (``own``: a callable of the canonical values, for sizes that follow the hidden size)."""

    tokenizer: Callable[[], Any]
    canonical: Mapping[str, Any] = field(default_factory=dict)
    own: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: {}
    tokenizer_pieces: str = "##"  # the subword marker its tokenizer writes (a check of the tiny tokenizer)


@dataclass(frozen=True)
class Family:
    """One source ``config.model_type`` and its explicit maps onto the canonical encoder."""

    model_type: str
    prefix: str  # the encoder's prefix in its *ForMaskedLM checkpoint
    weights: Mapping[str, str]
    position_offset: Callable[[PretrainedConfig], int]
    tiny: Tiny
    config: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    absent: Mapping[str, str] = field(default_factory=dict)  # canonical key -> why zeros are exact
    head_activation: str | None = "gelu"  # the activation its MLM head applies; None: its hidden_act
    refusals: Mapping[str, str] = field(default_factory=dict)  # target -> why it is refused
    refuse: Callable[[str, PretrainedConfig], str | None] | None = None  # refusals that depend on the config
    notes: Mapping[str, str] = field(default_factory=dict)  # target -> its cell note in the README table
    lengthen: Callable[[PretrainedConfig, PretrainedConfig], None] | None = None  # full target's config
    # canonical key -> the canonical key whose tensor it shares (the head bias tied to the decoder's)
    tied: Mapping[str, str] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()  # checkpoint key prefixes with no target counterpart, dropped on purpose

    # --- weights ---------------------------------------------------------------------------------------
    def canonical_key(self, key: str) -> str | None:
        """The canonical key of checkpoint ``key``; None: dropped on purpose. An unknown key is an error."""
        if key.startswith(self.dropped):
            return None
        target = self.weights.get(LAYER.sub(".{}", key))
        if target is None:
            raise LongifyError(f"source checkpoint: {key!r} is not a {self.model_type} parameter")
        return target.format(*LAYER.findall(key))

    def native_key(self, canonical: str) -> str | None:
        """The checkpoint key that holds canonical key ``canonical``; None: the family has no such tensor."""
        canonical = self.tied.get(canonical, canonical)
        native = self._inverse.get(LAYER.sub(".{}", canonical))
        return None if native is None else native.format(*LAYER.findall(canonical))

    def source_key(self, long_key: str) -> str | None:
        """The source checkpoint key that fills ``long_key`` of a LongformerForMaskedLM (None: absent)."""
        if long_key.startswith("longformer."):
            long_key = long_key[len("longformer.") :]
        return self.native_key(long_key)

    def zero_reason(self, target_key: str) -> str | None:
        """Why ``target_key`` (a target's key with no source tensor) is exact as zeros; None: it is not."""
        for canonical, why in self.absent.items():
            if target_key.endswith(canonical):
                return why
        return None

    @property
    def dropped_prefixes(self) -> tuple[str, ...]:
        """Source keys that have no target counterpart and are dropped on purpose."""
        return self.dropped

    @property
    def _inverse(self) -> dict[str, str]:
        return {v: k for k, v in self.weights.items()}

    @property
    def is_prefix_rename(self) -> bool:
        """Its checkpoint is the canonical encoder under a prefix, and nothing else (the five families of the
        first release: RoBERTa's or BERT's head names, no extra tensors)."""
        renamed = all(self.weights.get(self.prefix + k) == k for k in (*EMBEDDINGS, *LAYER_KEYS))
        return renamed and set(self.weights.values()) <= set(CANONICAL)

    # --- config ----------------------------------------------------------------------------------------
    def canonical_config(self, config: PretrainedConfig) -> dict[str, Any]:
        """The canonical config values of ``config`` (the fields it has, and the hard-wired constants)."""
        out = {}
        for name in CONFIG_FIELDS:
            own = self.config.get(name, name)
            if name in self.constants:
                out[name] = self.constants[name]
            elif hasattr(config, own):
                out[name] = getattr(config, own)
        return out

    def own_config(self, canonical: Mapping[str, Any]) -> dict[str, Any]:
        """Canonical values as the family's own config fields (its hard-wired constants left out)."""
        return {self.config.get(k, k): v for k, v in canonical.items() if k not in self.constants}

    def check(self, config: PretrainedConfig) -> None:
        """Refuse source configs whose architecture no target can express."""
        kind = getattr(config, "position_embedding_type", "absolute") or "absolute"
        if kind != "absolute":
            raise LongifyError(
                f"config.json: position_embedding_type is {kind!r}; only 'absolute' positions can be extended"
            )
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            raise LongifyError("config.json: is_decoder/add_cross_attention is set; expected an encoder")

    def check_target(self, target: str, config: PretrainedConfig) -> None:
        """Refuse ``target`` for this source in one line saying why."""
        why = self.refusals.get(target) or (self.refuse(target, config) if self.refuse else None)
        if why:
            raise LongifyError(f"--target {target}: refused for {self.model_type}: {why}")

    def head_act(self, config: PretrainedConfig) -> str:
        """The activation the source's MLM head applies."""
        return self.head_activation or str(self.canonical_config(config).get("hidden_act", "gelu"))
