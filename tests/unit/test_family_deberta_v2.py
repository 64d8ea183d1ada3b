"""DeBERTa-v2/mDeBERTa-v3 (``longify.families.deberta_v2``): relative positions in log buckets and no
absolute table convert to ``full`` only: DebertaV2ForMaskedLM with its usable length raised and its buckets
kept, exact on short inputs (distances past the exact buckets included) and run at the full length;
Longformer and BigBird are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from helpers import (
    FAMILY_MAX_POS,
    SOURCE_LEN,
    assert_reproduces_source,
    convert_to_allowed,
    refused_by_cli,
    short_family_batches,
)
from longify.convert import convert
from longify.tiny import save_tiny, tiny_model, train_tokenizer


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("deberta-v2", tmp_path_factory.mktemp("src") / "deberta-v2", max_len=SOURCE_LEN)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_to_allowed(source, tmp_path_factory.mktemp("long"))


def test_relative_source_converts_to_full_with_its_buckets_kept(source, converted) -> None:
    assert set(converted) == {"full"}
    src = AutoConfig.from_pretrained(source)
    assert src.relative_attention and not src.position_biased_input and src.max_relative_positions == -1
    assert src.position_buckets < 2 * SOURCE_LEN  # distances past the exact buckets are compared
    dst = AutoConfig.from_pretrained(converted["full"])
    assert dst.architectures == ["DebertaV2ForMaskedLM"]
    assert dst.max_position_embeddings == FAMILY_MAX_POS
    assert (dst.max_relative_positions, dst.position_buckets) == (SOURCE_LEN, src.position_buckets)
    assert AutoTokenizer.from_pretrained(converted["full"]).model_max_length == FAMILY_MAX_POS
    assert not any("position_embeddings" in k for k in load_file(converted["full"] / "model.safetensors"))
    assert_reproduces_source(source, converted["full"], "full")


def test_raising_the_length_without_pinning_the_buckets_would_not_be_exact(source) -> None:
    """What the pinned ``max_relative_positions`` guards: the bucketing reads it, so the same weights with it
    derived from the raised length give other outputs on the source's own inputs."""
    model = AutoModelForMaskedLM.from_pretrained(source).eval()
    config = AutoConfig.from_pretrained(source)
    config.max_position_embeddings = FAMILY_MAX_POS
    unpinned = AutoModelForMaskedLM.from_config(config).eval()
    unpinned.load_state_dict(model.state_dict())
    tok = AutoTokenizer.from_pretrained(source)
    batch = short_family_batches(tok, config.vocab_size, SOURCE_LEN)[0]
    with torch.no_grad():
        diff = (model(**batch).logits - unpinned(**batch).logits).abs().max().item()
    assert diff > 1e-4


def test_full_target_runs_at_the_full_length(converted) -> None:
    record = json.loads((converted["full"] / "conversion.json").read_text())
    assert record["long_run"]["length"] == FAMILY_MAX_POS and record["verification"]["passed"]


@pytest.mark.parametrize("target", ["longformer", "bigbird"])
def test_longformer_and_bigbird_refused_saying_why(target: str, source, tmp_path, capsys) -> None:
    err = refused_by_cli(capsys, source, tmp_path / "out", target)
    assert "relative positions" in err and "use --target full" in err


def test_absolute_table_is_extended_and_exact(tmp_path) -> None:
    """A DeBERTa-v2 with ``position_biased_input`` (an absolute table beside the relative buckets)."""
    tok = train_tokenizer("deberta-v2", model_max_length=SOURCE_LEN)
    src = tmp_path / "absolute"
    tiny_model("deberta-v2", tok, max_len=SOURCE_LEN, position_biased_input=True).save_pretrained(src)
    tok.save_pretrained(src)
    convert(str(src), tmp_path / "out", max_pos=FAMILY_MAX_POS, target="full")
    table = load_file(tmp_path / "out" / "model.safetensors")["deberta.embeddings.position_embeddings.weight"]
    rows = load_file(src / "model.safetensors")["deberta.embeddings.position_embeddings.weight"]
    assert table.shape[0] == FAMILY_MAX_POS and torch.equal(table[SOURCE_LEN:], rows)
    assert_reproduces_source(src, tmp_path / "out", "full")
