"""A flag is spelled out: a prefix (`--se 4`, a config key `learning_rat`) is refused, never taken for the
flag it starts (argparse's prefix matching is off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from longify.cli import main


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["qa", "train", "--model_name_or_path", "m", "--output_dir", "o", "--train_file", "t.json", "--se", "4"],
         "unknown flag(s): --se 4"),
        (["pretrain", "--model_name_or_path", "m", "--output_dir", "o", "--train_file_path", "t.raw",
          "--learning_rat", "1e-3"], "unknown flag(s): --learning_rat 1e-3"),
        (["convert", "src", "out", "--max-p", "128"], "unrecognized arguments: --max-p 128"),
        (["report", "study", "--resampl", "2000"], "unrecognized arguments: --resampl 2000"),
    ],
    ids=["qa-train", "pretrain", "convert", "report"],
)  # fmt: skip
def test_an_abbreviated_flag_is_refused(argv: list[str], said: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_an_abbreviated_key_in_a_config_file_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text("model_name_or_path: m\noutput_dir: o\ntrain_file_path: t.raw\nlearning_rat: 1.0e-3\n")
    assert main(["pretrain", str(config)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"longify: error: {config}: unknown key(s) learning_rat (not a flag of this command)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]
