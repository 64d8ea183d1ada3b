"""``longify export`` takes long models of every target (pretrain runs, checkpoints, QA runs), never a plain
short model."""

from __future__ import annotations

from pathlib import Path

from longify.cli import main


def test_export_refuses_a_short_model(tiny_sources: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A short model (a RobertaForMaskedLM with no longify record of a long target) is refused in one line,
    nothing written: export takes a long model."""
    source = tiny_sources["roberta"]
    out = tmp_path / "clean"
    assert main(["export", str(source), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"longify: error: {source}: a roberta model, not a long one; export takes a longify pretrain or qa train "
        "run, or a checkpoint of a long model (longformer, full, bigbird; convert a short model with longify "
        "convert)"
    ]
    assert not out.exists() and not list(tmp_path.glob(".*"))  # nothing written, no lock left


def test_export_card_says_what_the_model_went_through(tiny_sources: dict[str, Path], tmp_path: Path) -> None:
    """A converted, never pretrained Longformer is exported with a card that says so (never "after long
    masked-LM pretraining"); a Longformer of unknown origin gets a card that claims neither."""
    long = tmp_path / "long"
    assert (
        main(
            ["convert", str(tiny_sources["bert"]), str(long), "--max-pos", "128", "--attention-window", "32"]
        )
        == 0
    )
    assert main(["export", str(long), str(tmp_path / "clean")]) == 0
    card = (tmp_path / "clean" / "README.md").read_text()
    assert "tags: [longformer, longify, fill-mask]" in card
    assert "converted from a short encoder with longify convert, not yet pretrained" in card
    assert "after long masked-LM pretraining" not in card
    (tmp_path / "clean" / "conversion.json").unlink()  # a Longformer of unknown origin: no claim either way
    assert main(["export", str(tmp_path / "clean"), str(tmp_path / "again")]) == 0
    card = (tmp_path / "again" / "README.md").read_text()
    assert "A Longformer masked-LM model, exported with longify." in card and "pretrain" not in card
    assert '"model_type": "longformer"' in (tmp_path / "clean" / "config.json").read_text()
