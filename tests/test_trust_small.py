"""Smaller points of trust, each through the command line where the user meets it: a full disk outside
checkpoints names the file being written and leaves nothing half-written (``report``, ``qa evaluate``, a
write whose error carries no file name, TensorBoard events); an attention window larger than the positions
is refused; a non-UTF-8 ``qa predict --context-file`` is named by line, column and byte; a no-op rerun of a
copied run folder names the copy. (DDP's unused-parameter warning: ``test_ddp.launch``.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from longify.cli import main
from longify.errors import LongifyError
from test_bad_input import CONVERT, SQUAD, WIKI, _one_line, long_model, needs_mount, tmpfs  # noqa: F401
from test_report import make_study

# a path in a full-disk message: what the user asked to be written, never a temporary name of ours
_FULL = re.compile(r"longify: error: (/\S+): no space left on the disk")


def _named_path(line: str, under: Path) -> Path:
    found = _FULL.match(line)
    assert found, line
    path = Path(found.group(1))
    assert path.is_relative_to(under) and path != under, line
    assert not any(part.startswith(".") for part in path.relative_to(under).parts), line  # no temp names
    return path


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- full disks ------------------------------------------------------------------------------------------


@needs_mount
def test_full_disk_report_names_the_file_and_leaves_nothing(tmp_path, tmpfs, capsys) -> None:  # noqa: F811
    make_study(tmp_path / "study")
    full = tmpfs(tmp_path / "full", "size=16k")  # the plots alone are larger
    out = full / "new" / "report"  # its parent is made too, and removed again
    assert main(["report", str(tmp_path / "study"), "--out", str(out), "--resamples", "1000"]) == 2
    _named_path(_one_line(capsys), out)
    assert _everything(full) == []  # no empty plots/ folder, no report/ folder, no temporary files


@needs_mount
def test_full_disk_report_keeps_the_earlier_report(tmp_path, tmpfs, capsys) -> None:  # noqa: F811
    """A report rewritten on a disk that fills up meanwhile: the earlier files stay as they were."""
    make_study(tmp_path / "study")
    full = tmpfs(tmp_path / "full", "size=2m")
    out = full / "report"
    assert main(["report", str(tmp_path / "study"), "--out", str(out), "--resamples", "1000"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    free = shutil.disk_usage(full).free
    (full / "filler").write_bytes(b"\0" * (free - 4096))  # a few KB left: not enough for a new plot
    (tmp_path / "study" / "pretrain_curves.jsonl").unlink()  # the rerun differs (stale plot removal)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "study"), "--out", str(out), "--resamples", "1000"]) == 2
    _named_path(_one_line(capsys), out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in full.iterdir()) == ["filler", "report"]
    assert not [p for p in out.rglob(".*")]  # no temporary files left inside


@pytest.mark.integration
@needs_mount
def test_full_disk_qa_evaluate_names_the_file_and_leaves_nothing(long_model, tmp_path, tmpfs, capsys) -> None:  # noqa: F811
    full = tmpfs(tmp_path / "full", "size=12k")  # the predictions and scores take ~30 KB
    out = full / "eval"
    argv = ["qa", "evaluate", "--model_name_or_path", str(long_model), "--output_dir", str(out),
            "--predict_file", str(SQUAD), "--doc_stride", "32", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 2
    _named_path(_one_line(capsys), out)
    assert _everything(full) == []


@needs_mount
def test_full_disk_while_swapping_in_eval_files_leaves_nothing(tmp_path, tmpfs) -> None:  # noqa: F811
    """The disk fills up after the new files are written, as the record of the swap is written: the folder
    is named, and neither the new files nor the swap's folder stay."""
    from longify.qa.evalset import eval_files_into

    full = tmpfs(tmp_path / "full", "size=64k")
    out = full / "eval"
    expected = rf"^{re.escape(str(out))}: no space left on the disk"
    with pytest.raises(LongifyError, match=expected), eval_files_into(out) as tmp:
        (tmp / "results.json").write_text("{}")
        free = shutil.disk_usage(full).free
        (full / "filler").write_bytes(b"\0" * free)  # every block taken
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def _write_to_open_file(path: Path) -> None:
    """A write through an open file: the OSError carries no file name."""
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(b"x" * 4096)
            f.flush()


def _write_tensorboard_events(folder: Path) -> None:
    """TensorBoard's writer thread fails; its error is raised again, without a name, at a later call."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for step in range(4000):
        writer.add_text("notes", "x" * 200, step)
    writer.close()


@needs_mount
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no thread traceback
@pytest.mark.parametrize("write", [_write_to_open_file, _write_tensorboard_events])
def test_full_disk_write_without_a_file_name_names_it(write, tmp_path, tmpfs, monkeypatch, capsys) -> None:  # noqa: F811
    """Libraries drop the name of the file they were writing; the CLI's one line still names it."""
    from longify import cli

    full = tmpfs(tmp_path / "full", "size=64k")
    target = full / "run" / "out.bin"
    target.parent.mkdir()

    def run(_args):
        write(target if write is _write_to_open_file else target.parent)

    monkeypatch.setitem(cli.COMMANDS, "export", cli.Command("x", arguments=cli._add_export, run=run))
    assert main(["export", "a", "b"]) == 2
    named = _named_path(_one_line(capsys), full / "run")
    assert named.is_file()  # the very file, as it is on disk


# -- attention window, context file, copied run ----------------------------------------------------------


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
    assert f"{flags[0]} 4096: larger than {flags[1]} 128; give at most 128" in _one_line(capsys)
    assert not (tmp_path / "long").exists() and not (tmp_path / "run").exists()


def test_context_file_not_utf8_names_line_column_and_byte(tmp_path, capsys) -> None:
    context = tmp_path / "context.txt"
    context.write_bytes("First line.\nThe caf\xe9 opened in 1900.\n".encode("latin-1"))
    argv = ["qa", "predict", "--model", str(tmp_path / "no-model"), "--question", "When?",
            "--context-file", str(context)]  # fmt: skip
    assert main(argv) == 2
    line = _one_line(capsys)
    assert f"--context-file {context}: not UTF-8 text: byte 0xe9" in line, line
    assert "at line 2, column 8 (byte offset 19 in the file)" in line, line


@pytest.mark.integration
def test_noop_rerun_of_a_copied_run_names_the_copy(long_model, tmp_path, capsys) -> None:  # noqa: F811
    """A finished run copied elsewhere and run again there: nothing to do, and the summary names the copy
    (not the folder recorded when it ran)."""
    first, copy = tmp_path / "first", tmp_path / "copy"
    argv = ["pretrain", "--model_name_or_path", str(long_model), "--train_file_path", str(WIKI), "--do_train",
            "--do_eval", "--val_file_path", str(WIKI), "--max_eval_blocks", "2", "--max_steps", "1",
            "--block_size", "64", "--report_to", "none"]  # fmt: skip
    assert main([*argv, "--output_dir", str(first)]) == 0
    shutil.copytree(first, copy)
    shutil.rmtree(first)  # the original is gone: nothing may point there
    capsys.readouterr()
    assert main([*argv, "--output_dir", str(copy)]) == 0
    out = capsys.readouterr().out
    assert str(copy) in out and str(first) not in out, out
    assert not first.exists()


def _read_then_fail(path: Path) -> None:
    """Reads ``path`` (an input), then a write elsewhere fails on a full disk with an error naming no file."""
    with open(path, encoding="utf-8") as f:
        f.read()
        raise OSError(28, "No space left on device")


def test_full_disk_error_never_names_a_file_being_read(tmp_path) -> None:
    """The file found in a traceback is one being written: an input file read in an outer frame (on a disk
    with space) is never named as the file a full disk stopped."""
    from longify.outdir import write_failure

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
    line = _one_line(capsys)
    assert "--max-pos: must be larger than the source's" in line and "give at most" not in line, line
