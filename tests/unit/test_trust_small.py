"""Smaller points of trust, each through the command line where the user meets it: an attention window larger
than the positions is refused, and the check never advises an impossible window; a non-UTF-8 ``qa predict
--context-file`` is named by line, column and byte; a full-disk error never names a file being read. Full
disks and copied runs: tests/integration/test_full_disk_and_copies.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import WIKI, one_line
from longify.cli import main

# -- attention window, context file, disk errors ---------------------------------------------------------


@pytest.mark.parametrize("command", ["convert", "pretrain"])
def test_attention_window_larger_than_max_pos_is_refused(command, tiny_sources, tmp_path, capsys) -> None:
    """A window wider than the sequence makes no sense (and verification would pad every input to it)."""
    src = str(tiny_sources["roberta"])
    argv = {
        "convert": ["convert", src, str(tmp_path / "long"), "--max-pos", "128", "--attention-window", "4096"],
        "pretrain": ["pretrain", "--model_name_or_path", src, "--output_dir", str(tmp_path / "run"),
                     "--max_pos", "128", "--attention_window", "4096", "--train_file_path", str(WIKI),
                     "--do_train", "--max_steps", "1", "--report_to", "none"],
    }[command]  # fmt: skip
    assert main(argv) == 2
    flags = (
        ("--attention-window", "--max-pos") if command == "convert" else ("--attention_window", "--max_pos")
    )
    assert f"{flags[0]} 4096: larger than {flags[1]} 128; give at most 128" in one_line(capsys)
    assert not (tmp_path / "long").exists() and not (tmp_path / "run").exists()


def test_context_file_not_utf8_names_line_column_and_byte(tmp_path, capsys) -> None:
    context = tmp_path / "context.txt"
    context.write_bytes("First line.\nThe caf\xe9 opened in 1900.\n".encode("latin-1"))
    argv = ["qa", "predict", "--model", str(tmp_path / "no-model"), "--question", "When?",
            "--context-file", str(context)]  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys)
    assert f"--context-file {context}: not UTF-8 text: byte 0xe9" in line, line
    assert "at line 2, column 8 (byte offset 19 in the file)" in line, line


def _read_then_fail(path: Path) -> None:
    """Reads ``path`` (an input), then a write elsewhere fails on a full disk with an error naming no file."""
    with open(path, encoding="utf-8") as f:
        f.read()
        raise OSError(28, "No space left on device")


def test_full_disk_error_never_names_a_file_being_read(tmp_path) -> None:
    """The file found in a traceback is one being written: an input file read in an outer frame (on a disk
    with space) is never named as the file a full disk stopped."""
    from longify.fileio import write_failure

    source = tmp_path / "input.txt"
    source.write_text("text", encoding="utf-8")
    with pytest.raises(OSError) as caught:
        _read_then_fail(source)
    failure = write_failure(caught.value)
    assert failure is not None and str(source) not in str(failure), failure


@pytest.mark.parametrize("max_pos", ["-4", "1"])
def test_window_check_never_advises_an_impossible_window(max_pos, tiny_sources, tmp_path, capsys) -> None:
    """With positions too few for any window, the error is about --max-pos, not "give at most 0"."""
    argv = ["convert", str(tiny_sources["roberta"]), str(tmp_path / "long"), "--max-pos", max_pos,
            "--attention-window", "8"]  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys)
    assert "--max-pos: must be larger than the source's" in line and "give at most" not in line, line
