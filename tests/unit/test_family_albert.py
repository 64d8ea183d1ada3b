"""ALBERT (``longify.families.albert``): shared layers over factorised embeddings convert to ``full`` only
(AlbertForMaskedLM, positions extended, exact on short inputs); Longformer and BigBird are refused in one
line saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FAMILY_MAX_POS, SOURCE_LEN, assert_reproduces_source, convert_to_allowed, refused_by_cli
from longify.tiny import save_tiny


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("albert", tmp_path_factory.mktemp("src") / "albert", max_len=SOURCE_LEN)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_to_allowed(source, tmp_path_factory.mktemp("long"))


def test_shared_layers_convert_to_full_exactly(source, converted) -> None:
    assert set(converted) == {"full"}
    config = json.loads((converted["full"] / "config.json").read_text())
    assert config["architectures"] == ["AlbertForMaskedLM"]
    assert (config["num_hidden_groups"], config["num_hidden_layers"]) == (1, 2)
    assert config["embedding_size"] < config["hidden_size"]
    assert config["max_position_embeddings"] == FAMILY_MAX_POS
    assert_reproduces_source(source, converted["full"], "full")


@pytest.mark.parametrize("target", ["longformer", "bigbird"])
def test_longformer_and_bigbird_refused_saying_why(target: str, source, tmp_path, capsys) -> None:
    err = refused_by_cli(capsys, source, tmp_path / "out", target)
    assert "layers share one set of weights" in err and "use --target full" in err
