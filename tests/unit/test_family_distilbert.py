"""DistilBERT (``longify.families.distilbert``) converts to every target and is still its source on short
inputs: its layer names and config fields map onto the canonical encoder, its missing token types become
zeros that conversion.json names, and the ``full`` target keeps DistilBertForMaskedLM with a learned table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from helpers import (
    FAMILY_MAX_POS,
    SOURCE_LEN,
    TARGET_OPTIONS,
    assert_reproduces_source,
    convert_to_allowed,
)
from longify.convert import convert
from longify.tiny import save_tiny

TOKEN_TYPES = {
    "longformer": "longformer.embeddings.token_type_embeddings.weight",
    "bigbird": "bert.embeddings.token_type_embeddings.weight",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("distilbert", tmp_path_factory.mktemp("src") / "distilbert", max_len=SOURCE_LEN)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_to_allowed(source, tmp_path_factory.mktemp("long"))


def test_every_target_is_allowed(converted) -> None:
    assert set(converted) == set(TARGET_OPTIONS)


@pytest.mark.parametrize("target", list(TARGET_OPTIONS))
def test_distilbert_target_reproduces_source_with_logits(target: str, source, converted) -> None:
    assert_reproduces_source(source, converted[target], target)


@pytest.mark.parametrize("target", sorted(TOKEN_TYPES))
def test_token_types_are_zeros_named_in_conversion_json(target: str, converted) -> None:
    out = converted[target]
    record = json.loads((out / "conversion.json").read_text())
    key = TOKEN_TYPES[target]
    assert list(record["zero_tensors"]) == [key] and "no token types" in record["zero_tensors"][key]
    assert key not in record["new_tensors"]
    table = load_file(out / "model.safetensors")[key]
    assert table.shape[0] == 1 and torch.count_nonzero(table) == 0
    assert AutoConfig.from_pretrained(out).type_vocab_size == 1


@pytest.mark.parametrize("target", sorted(TOKEN_TYPES))
def test_config_fields_map_onto_the_target(target: str, source, converted) -> None:
    src = AutoConfig.from_pretrained(source)
    dst = AutoConfig.from_pretrained(converted[target])
    assert (dst.hidden_size, dst.num_hidden_layers, dst.num_attention_heads) == (
        src.dim,
        src.n_layers,
        src.n_heads,
    )
    assert (dst.intermediate_size, dst.hidden_act) == (src.hidden_dim, src.activation)
    assert (dst.hidden_dropout_prob, dst.attention_probs_dropout_prob) == (src.dropout, src.attention_dropout)
    assert dst.layer_norm_eps == 1e-12  # DistilBERT's LayerNorms hard-wire it


def test_full_target_is_distilbert_with_a_learned_longer_table(source, converted) -> None:
    config = json.loads((converted["full"] / "config.json").read_text())
    assert config["architectures"] == ["DistilBertForMaskedLM"]
    assert config["max_position_embeddings"] == FAMILY_MAX_POS and config["sinusoidal_pos_embds"] is False
    table = load_file(converted["full"] / "model.safetensors")[
        "distilbert.embeddings.position_embeddings.weight"
    ]
    rows = load_file(source / "model.safetensors")["distilbert.embeddings.position_embeddings.weight"]
    assert torch.equal(table[:SOURCE_LEN], rows) and torch.equal(table[SOURCE_LEN:], rows)  # copied


def test_sinusoidal_source_keeps_its_table_in_the_full_target(source, tmp_path) -> None:
    """A source with ``sinusoidal_pos_embds`` stores its table: the long one copies it and stays learned."""
    src = tmp_path / "sinusoidal"
    src.mkdir()
    for f in source.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "sinusoidal_pos_embds": True}))
    convert(str(src), tmp_path / "out", max_pos=FAMILY_MAX_POS, target="full")
    assert_reproduces_source(src, tmp_path / "out", "full")
