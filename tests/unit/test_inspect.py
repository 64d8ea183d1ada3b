"""`longify inspect MODEL`: what a model folder will run, read from its files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from longify.cli import main
from longify.convert import convert
from longify.tiny import save_tiny


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", "inspect", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture(scope="module")
def bigbird(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "bigbird"
    convert(
        str(tiny_sources["roberta"]), out, max_pos=128, target="bigbird", block_size=4, num_random_blocks=1
    )
    return out


def test_bigbird_attention_lengths_and_provenance(bigbird, capsys) -> None:
    code, out, _ = _inspect(capsys, str(bigbird))
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["target"] == "bigbird" and lines["positions usable"] == "128"
    assert lines["attention"].startswith(
        "full attention up to 28 tokens, block-sparse above (blocks of 4, 1 random)"
    )
    assert lines["conversion"].startswith("from ") and "2 new tensors" in lines["conversion"]
    assert lines["config and weights"] == "agree (44 tensors)"


def test_a_long_class_without_conversion_record_is_still_its_target(
    bigbird, long_model, tmp_path, capsys
) -> None:
    """A Longformer or a BigBird is its target by its class alone; inspect says the record is missing."""
    for name, model in (("bigbird", bigbird), ("longformer", long_model)):
        copy = tmp_path / name
        shutil.copytree(model, copy)
        (copy / "conversion.json").unlink()
        code, out, _ = _inspect(capsys, str(copy))
        lines = dict(line.split(": ", 1) for line in out.splitlines())
        assert code == 0 and lines["target"] == f"{name} (no conversion.json)"
        assert lines["positions usable"] == "128" and lines["conversion"] == "none (no conversion.json)"
    assert lines["attention"] == (
        "sliding window [32] (w/2 each side) + global attention on marked tokens; inputs padded to a multiple "
        "of 32; full attention only on inputs of up to 17 tokens"
    )


def test_config_that_disagrees_with_the_weights_is_reported(bigbird, tmp_path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bigbird, copy)
    config = json.loads((copy / "config.json").read_text())
    config["max_position_embeddings"] = 256
    (copy / "config.json").write_text(json.dumps(config))
    code, out, _ = _inspect(capsys, str(copy), "--json")
    found = json.loads(out)
    assert code == 0 and found["positions"] == 256
    assert found["weights"].startswith("DISAGREE: 1 shaped unlike the config")
    assert "bert.embeddings.position_embeddings.weight: (128, 32) vs (256, 32)" in found["weights"]


def test_long_full_attention_checkpoint_without_record_is_named(tmp_path, capsys) -> None:
    """Like the thesis's released model: model_type xlm-roberta, a long table, no conversion.json."""
    model = save_tiny("xlm-roberta", tmp_path / "thesis-like", max_len=1024, layers=1)
    code, out, _ = _inspect(capsys, str(model))
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["target"] == "full (long positions, no conversion record)"
    assert lines["positions usable"] == "1024"
    assert lines["note"].startswith("a full-attention xlm-roberta with 1024 positions and no conversion.json")


@pytest.mark.parametrize("what", ["missing", "file", "no config"])
def test_inspect_of_a_non_model_is_one_line_exit_2(what: str, tmp_path, capsys) -> None:
    path = tmp_path / "thing"
    if what == "file":
        path.write_text("x")
    elif what == "no config":
        path.mkdir()
    code, out, err = _inspect(capsys, str(path))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("longify: error: ") and "thing" in err, err
