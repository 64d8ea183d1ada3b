"""``pretrain`` of a short source checks every input before the conversion: a corpus that is not UTF-8, a
validation file that is missing (or not given while evaluating) and a block size above the positions are each
one line, exit 2, and nothing is written (no ``OUTPUT/converted``, no run record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import one_line, write_wikitext
from longify.cli import main


def _argv(source: Path, out: Path, wiki: Path, *extra: str) -> list[str]:
    return [
        "pretrain", "--model_name_or_path", str(source), "--output_dir", str(out), "--max_pos", "128",
        "--attention_window", "32", "--train_file_path", str(wiki / "wiki.train.raw"),
        "--val_file_path", str(wiki / "wiki.valid.raw"), "--do_train", "--do_eval", "--max_steps", "1",
        "--report_to", "none", "--data_cache_dir", str(out.parent / "cache"), *extra,
    ]  # fmt: skip


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    line = one_line(capsys)
    assert not (out / "converted").exists() and not (out / "longify_run.json").exists()
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    return line


def test_a_corpus_that_is_not_utf8_is_refused_before_the_conversion(tiny_sources, tmp_path, capsys) -> None:
    wiki = write_wikitext(tmp_path / "wiki")
    train = wiki / "wiki.train.raw"
    train.write_bytes(train.read_bytes()[:200] + b"\xff\xfe" + train.read_bytes()[200:])
    out = tmp_path / "out"
    line = _refused(_argv(tiny_sources["roberta"], out, wiki), out, capsys)
    assert f"{train}: not UTF-8 text: byte 0xff" in line


def test_a_missing_validation_file_is_refused_before_the_conversion(tiny_sources, tmp_path, capsys) -> None:
    wiki = write_wikitext(tmp_path / "wiki")
    (wiki / "wiki.valid.raw").unlink()
    out = tmp_path / "out"
    line = _refused(_argv(tiny_sources["roberta"], out, wiki), out, capsys)
    assert f"{wiki / 'wiki.valid.raw'}: no such file" in line


def test_evaluation_without_a_validation_file_is_refused_before_the_conversion(
    tiny_sources, tmp_path, capsys
) -> None:
    wiki = write_wikitext(tmp_path / "wiki")
    out = tmp_path / "out"
    argv = _argv(tiny_sources["roberta"], out, wiki)
    at = argv.index("--val_file_path")
    del argv[at : at + 2]
    line = _refused(argv, out, capsys)
    assert "--val_file_path: needed for --do_eval" in line


def test_a_block_size_above_the_positions_is_refused_before_the_conversion(
    tiny_sources, tmp_path, capsys
) -> None:
    """Beyond a given --max_pos when the flags are parsed; beyond the default 4096 positions here."""
    wiki = write_wikitext(tmp_path / "wiki")
    out = tmp_path / "out"
    line = _refused(_argv(tiny_sources["roberta"], out, wiki, "--block_size", "256"), out, capsys)
    assert "--block_size 256: larger than --max_pos 128" in line
    argv = _argv(tiny_sources["roberta"], out, wiki, "--block_size", "5000")
    at = argv.index("--max_pos")
    del argv[at : at + 2]
    line = _refused(argv, out, capsys)
    assert "--block_size 5000" in line and "at most 4096" in line


def test_a_source_no_conversion_knows_is_refused_before_the_corpus_is_read(tmp_path, capsys) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    source = tmp_path / "gpt2"
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)
    ).save_pretrained(source)
    wiki = write_wikitext(tmp_path / "wiki")
    out = tmp_path / "out"
    line = _refused(_argv(source, out, wiki), out, capsys)
    assert "gpt2" in line
    assert not (tmp_path / "cache").exists()  # nothing was tokenised
