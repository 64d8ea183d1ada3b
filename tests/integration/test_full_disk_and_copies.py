"""A full disk outside checkpoints names the file being written and leaves nothing half-written (``report``,
``qa evaluate``, the swap of evaluation files, a write whose error carries no file name, TensorBoard events);
a no-op rerun of a copied run folder names the copy.

Real faults: tmpfs mounts made by the test (the ``tmpfs`` fixture; root may mount here)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from helpers import SQUAD, WIKI, make_study, one_line
from longify.cli import main
from longify.errors import LongifyError

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


def test_full_disk_report_names_the_file_and_leaves_nothing(tmp_path, tmpfs, capsys) -> None:
    make_study(tmp_path / "study")
    full = tmpfs(tmp_path / "full", "size=16k")  # the plots alone are larger
    out = full / "new" / "report"  # its parent is made too, and removed again
    assert main(["report", str(tmp_path / "study"), "--out", str(out), "--resamples", "1000"]) == 2
    _named_path(one_line(capsys), out)
    assert _everything(full) == []  # no empty plots/ folder, no report/ folder, no temporary files


def test_full_disk_report_keeps_the_earlier_report(tmp_path, tmpfs, capsys) -> None:
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
    _named_path(one_line(capsys), out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in full.iterdir()) == ["filler", "report"]
    assert not [p for p in out.rglob(".*")]  # no temporary files left inside


def test_full_disk_qa_evaluate_names_the_file_and_leaves_nothing(long_model, tmp_path, tmpfs, capsys) -> None:
    full = tmpfs(tmp_path / "full", "size=12k")  # the predictions and scores take ~30 KB
    out = full / "eval"
    argv = ["qa", "evaluate", "--model_name_or_path", str(long_model), "--output_dir", str(out),
            "--predict_file", str(SQUAD), "--doc_stride", "32", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 2
    _named_path(one_line(capsys), out)
    assert _everything(full) == []


def test_full_disk_while_swapping_in_eval_files_leaves_nothing(tmp_path, tmpfs) -> None:
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


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no thread traceback
@pytest.mark.parametrize("write", [_write_to_open_file, _write_tensorboard_events])
def test_full_disk_write_without_a_file_name_names_it(write, tmp_path, tmpfs, monkeypatch, capsys) -> None:
    """Libraries drop the name of the file they were writing; the CLI's one line still names it."""
    from longify import cli

    full = tmpfs(tmp_path / "full", "size=64k")
    target = full / "run" / "out.bin"
    target.parent.mkdir()

    def run(_args):
        write(target if write is _write_to_open_file else target.parent)

    monkeypatch.setitem(cli.COMMANDS, "export", cli.Command("x", arguments=cli._add_export, run=run))
    assert main(["export", "a", "b"]) == 2
    named = _named_path(one_line(capsys), full / "run")
    assert named.is_file()  # the very file, as it is on disk


def test_noop_rerun_of_a_copied_run_names_the_copy(long_model, tmp_path, capsys) -> None:
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
