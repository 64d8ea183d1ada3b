"""Bad files and folders are one line naming the path and what was expected, exit 2, nothing half-written:
permission-denied folders, an output folder whose parent is a file, unreadable and non-UTF-8 inputs, a
damaged or unreadable data-cache entry, a SQuAD article without paragraphs, a disk error raised where no
helper maps it; a very long line is tokenized in pieces.

"Permission denied" is this process with its effective uid set to ``nobody`` (root bypasses file modes),
around calls whose modules are already imported. Where that is impossible the test skips and says why.
Read-only and full disks (real mounts): tests/integration/test_bad_disks.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import SQUAD, WIKI, every_command, one_line
from longify.cli import main
from longify.errors import LongifyError
from longify.mlm import data as mlm_data
from longify.qa.tasks import load_examples

NOBODY = 65534


needs_setuid = pytest.mark.skipif(
    os.geteuid() != 0, reason="'permission denied' is made by running as nobody, which needs root"
)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder outside pytest's 0700 tmp tree that ``nobody`` can look into."""
    path = Path(tempfile.mkdtemp(prefix="longify-bad-input-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def as_nobody() -> Iterator[None]:
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@needs_setuid
def test_permission_denied_folder_is_named(open_dir) -> None:
    theirs = open_dir / "theirs"
    theirs.mkdir(mode=0o755)  # root's: nobody may look in but not write
    from longify.fileio import check_writable

    with as_nobody(), pytest.raises(LongifyError) as err:
        check_writable(theirs / "run")
    assert (
        str(err.value)
        == f"{theirs / 'run'}: cannot write in {theirs} (permission denied); choose a writable folder"
    )


@pytest.mark.parametrize("command", ["convert", "export", "pretrain", "qa train", "qa evaluate"])
def test_output_folder_under_a_file(command, tiny_sources, long_model, tmp_path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "out"
    assert main(every_command(tiny_sources["roberta"], long_model, out)[command]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a folder" in one_line(capsys)
    assert (tmp_path / "afile").read_text() == "x"


# -- inputs ----------------------------------------------------------------------------------------


@needs_setuid
def test_unreadable_inputs_say_permission_denied_not_missing(open_dir) -> None:
    locked = open_dir / "locked"
    locked.mkdir(mode=0o700)  # nobody may not look inside
    (locked / "train.txt").write_text("some text\n")
    shutil.copy(SQUAD, locked / "dev.json")
    unreadable = open_dir / "train.txt"
    unreadable.write_text("some text\n")
    unreadable.chmod(0o000)
    qa_file = open_dir / "dev.jsonl"
    qa_file.write_text('{"id": "1", "question": "q", "context": "c", "answers": []}\n')
    qa_file.chmod(0o000)
    calls = {
        "resolve": lambda: mlm_data.resolve_sources([str(locked / "train.txt")]),
        "read": lambda: mlm_data.read_text_units(str(unreadable)),
        "qa json": lambda: list(load_examples("json", locked / "dev.json")),
        "qa jsonl": lambda: list(load_examples("json", qa_file)),
        "squad dir": lambda: list(load_examples("squad", locked)),
    }
    for name, call in calls.items():
        with as_nobody(), pytest.raises(LongifyError) as err:
            call()
        assert "permission denied" in str(err.value) and "not found" not in str(err.value), (name, err.value)


def _bad_byte_file(path: Path) -> tuple[int, int, int]:
    """Many lines (more than one read buffer), then a line with a Latin-1 byte: (line, column, offset)."""
    head = ("word " * 20 + "\n") * 500  # 50 KB
    bad = 'line with caf\xe9 in it: "'
    path.write_bytes(head.encode() + bad.encode("latin-1") + b"\nmore\n")
    return head.count("\n") + 1, bad.index("\xe9") + 1, len(head.encode()) + bad.index("\xe9")


def test_non_utf8_text_names_the_real_place(tmp_path) -> None:
    line, column, offset = _bad_byte_file(tmp_path / "corpus.raw")
    with pytest.raises(LongifyError) as err:
        mlm_data.read_text_units(str(tmp_path / "corpus.raw"))
    assert f"at line {line}, column {column} (byte offset {offset} in the file)" in str(err.value)


@pytest.mark.parametrize("command", ["pretrain", "qa"])
def test_non_utf8_jsonl_is_one_line(command, tiny_sources, long_model, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    good = {
        "text": "plain words " * 20,
        "id": "1",
        "question": "q",
        "context": "words",
        "answers": [{"text": "words", "answer_start": 0}],
    }
    bad.write_bytes(json.dumps(good).encode() + b"\n" + b'{"text": "caf\xe9", "id": "2"}\n')
    offset = len(json.dumps(good)) + 1 + len('{"text": "caf')
    argv = (
        ["pretrain", "--model_name_or_path", str(long_model), "--output_dir", str(tmp_path / "o"),
         "--train_file_path", str(bad), "--do_train", "--max_steps", "1", "--report_to", "none"]
        if command == "pretrain"
        else ["qa", "evaluate", "--model_name_or_path", str(long_model), "--output_dir", str(tmp_path / "o"),
              "--predict_file", str(bad), "--report_to", "none"]
    )  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys)
    assert f"{bad}: not UTF-8 text" in line and f"line 2, column 14 (byte offset {offset} " in line, line


def test_squad_article_without_paragraphs_is_named(tmp_path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Physics", "qas": []}]}))
    with pytest.raises(LongifyError, match=r"article 'Physics': missing field 'paragraphs'"):
        list(load_examples("json", path))


# -- the data cache and disk errors ----------------------------------------------------------------


def _blocks(tokenizer, cache: Path, source: Path = WIKI):
    return mlm_data.load_blocks(str(source), tokenizer, 64, cache_dir=str(cache))


@pytest.mark.parametrize("damage", ["truncated", "stats"])
def test_damaged_cache_entry_is_rebuilt_with_a_warning(damage, tiny_sources, tmp_path, caplog) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    first, stats = _blocks(tok, tmp_path)
    expected = first.to_dict()["input_ids"]  # copied out of the memory map before the file is damaged
    del first
    entry = Path(stats.cache_path)
    if damage == "truncated":
        arrow = next(entry.glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    else:
        (entry / "stats.json").write_text('{"n_files": 1, "n_ch')
    with caplog.at_level(logging.WARNING, logger="longify.mlm.data"):
        again, stats2 = _blocks(tok, tmp_path)
    assert not stats2.from_cache and again.to_dict()["input_ids"] == expected
    assert any("damaged data-cache entry" in r.getMessage() for r in caplog.records)
    assert _blocks(tok, tmp_path)[1].from_cache  # and the rebuilt entry is good


@needs_setuid
def test_unreadable_cache_entry_is_one_line(tiny_sources, open_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    source = open_dir / "train.raw"
    shutil.copy(WIKI, source)
    _, stats = _blocks(tok, open_dir / "cache", source)
    Path(stats.cache_path).chmod(0o700)
    with (
        as_nobody(),
        pytest.raises(LongifyError, match=r"cannot read this data-cache entry \(permission denied\)"),
    ):
        _blocks(tok, open_dir / "cache", source)


def test_last_resort_maps_disk_errors_anywhere(monkeypatch, capsys) -> None:
    """Simulated at the call (an error raised where no helper maps it): the CLI's last resort."""
    from longify import cli

    def fail(_args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/optimizer.pt")

    monkeypatch.setattr(cli, "_export", fail)
    monkeypatch.setitem(cli.COMMANDS, "export", cli.Command("x", arguments=cli._add_export, run=fail))
    assert main(["export", "a", "b"]) == 2
    assert "/data/run/optimizer.pt: no space left on the disk" in one_line(capsys)


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta", "bert"])
def test_long_lines_are_tokenized_in_pieces_with_the_same_ids(family, tiny_sources, monkeypatch) -> None:
    from transformers import AutoTokenizer

    words = WIKI.read_text(encoding="utf-8").split()
    text = " ".join(words[:3000]).replace(" of ", " of  ").replace(" the ", "\tthe ")  # runs, tabs too
    pieces = mlm_data.split_long_unit(text, 1000)
    assert "".join(pieces) == text and len(pieces) > 10
    assert all(len(p) <= 1000 for p in pieces)
    cut = 0
    for piece in pieces[:-1]:  # every cut opens a whitespace run that follows a word
        cut += len(piece)
        assert text[cut].isspace() and not text[cut - 1].isspace()
    backend, _ = mlm_data.backend_copy(AutoTokenizer.from_pretrained(tiny_sources[family]))
    whole = backend.encode(text, add_special_tokens=False).ids  # the line at once: the oracle
    monkeypatch.setattr(mlm_data, "LONG_UNIT_CHARS", 1000)
    import datasets

    ids, n_chars = mlm_data.tokenize_units(datasets.Dataset.from_dict({"text": [text]}), backend, 1)
    assert n_chars == len(text) and ids.tolist() == whole
