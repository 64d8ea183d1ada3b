"""Every folder longify writes is locked or lies inside one that is (``report``, ``data stats``, a running
pretrain's ``OUT/converted``), and a symbolic link loop as an output path is one line, not a traceback.

Another process's lock is simulated in this process (``held_by_other``: ``flock`` locks belong to an open
file, so a second ``open`` of the lock file here is refused as another process would be), which keeps these
tests deterministic and free of child processes; tests/integration/test_output_locks_processes.py holds it from
real processes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from helpers import (
    OTHER_HOLDER,
    held_by_other,
    make_study,
    one_error_line,
    small_convert_argv,
    small_lock_pretrain_argv,
    tree_digests,
    write_wikitext,
)
from longify.cli import main
from longify.locks import output_lock

# --- report and data stats take a lock --------------------------------------------------------------------


def test_report_into_a_held_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A report into an --out that another process holds is refused in one line naming it; nothing is written."""
    make_study(tmp_path / "study")
    out = tmp_path / "r"
    with held_by_other(out):
        assert main(["report", str(tmp_path / "study"), "--out", str(out), "--resamples", "1000"]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and f"pid {OTHER_HOLDER['pid']} on other-host" in line, line
    assert not out.exists()  # nothing written


def test_report_inside_a_held_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``report STUDY`` writes STUDY/report: not while another process (its study run) holds STUDY."""
    study = tmp_path / "study"
    make_study(study)
    before = tree_digests(study)
    with held_by_other(study):
        assert main(["report", str(study), "--resamples", "1000"]) == 2
    line = one_error_line(capsys)
    assert f"{study / 'report'}: inside {study}, which another longify process uses" in line, line
    assert f"pid {OTHER_HOLDER['pid']} " in line
    assert tree_digests(study) == before


def test_data_stats_into_a_held_folder_is_refused(
    tiny_sources: dict[str, Path], xquad_fixture_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stats"
    argv = [
        "data",
        "stats",
        "xquad",
        "--path",
        str(xquad_fixture_dir),
        "--tokenizer",
        str(tiny_sources["roberta"]),
    ]
    with held_by_other(out):
        assert main([*argv, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and f"pid {OTHER_HOLDER['pid']} " in line, line
    assert not out.exists()


# --- nested folders ---------------------------------------------------------------------------------------


def test_a_folder_inside_a_held_one_is_refused(
    tiny_sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a running pretrain holds OUT, ``convert ... OUT/converted --overwrite``, ``pretrain --output_dir
    OUT/converted`` and any new folder inside OUT are refused in one line naming the holder: a folder inside
    a held one is held too (never locked by a lock file of its own)."""
    out = tmp_path / "run"
    converted = out / "converted"
    assert main(small_convert_argv(tiny_sources["roberta"], converted)) == 0
    before = tree_digests(out)
    wiki = write_wikitext(tmp_path / "wiki")
    with held_by_other(out):
        assert main(small_convert_argv(tiny_sources["bert"], converted, "--overwrite")) == 2
        line = one_error_line(capsys)
        assert (
            f"{converted}: inside {out}, which another longify process uses (pid {OTHER_HOLDER['pid']}"
            in line
        )
        assert (
            main(small_lock_pretrain_argv(tiny_sources["roberta"], converted, wiki, "--overwrite_output_dir"))
            == 2
        )
        assert f"{converted}: inside {out}" in one_error_line(capsys)
        assert (
            main(small_convert_argv(tiny_sources["roberta"], out / "a" / "b")) == 2
        )  # deeper, and a new folder
        assert f"{out / 'a' / 'b'}: inside {out}" in one_error_line(capsys)
    assert tree_digests(out) == before  # nothing written, not even the folders on the way
    with output_lock(out):  # this process holds OUT: its own commands write inside it (pretrain does)
        assert main(small_convert_argv(tiny_sources["bert"], converted, "--overwrite")) == 0


def test_a_folder_with_a_held_one_inside_is_not_replaced(
    tiny_sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other way round: ``--overwrite`` of OUT is refused in one line while another process writes
    OUT/converted (naming its lock and PID); OUT stays as it was."""
    out = tmp_path / "model"
    assert main(small_convert_argv(tiny_sources["roberta"], out)) == 0
    before = tree_digests(out)
    with held_by_other(out / "converted"):
        assert main(small_convert_argv(tiny_sources["bert"], out, "--overwrite")) == 2
        line = one_error_line(capsys)
        assert f"{out}: --overwrite would replace it, but another longify process writes inside it" in line
        assert f"{out / '.converted.lock'} is held by pid {OTHER_HOLDER['pid']}" in line
        before[".converted.lock"] = tree_digests(out)[".converted.lock"]
        assert tree_digests(out) == before


def test_folders_made_for_a_lock_go_with_it(tiny_sources: dict[str, Path], tmp_path: Path) -> None:
    """A command that fails after taking its lock leaves none of the folders made to hold the lock file."""
    assert main(small_convert_argv(tmp_path / "no-such-model", tmp_path / "new" / "deep" / "out")) == 2
    assert not (tmp_path / "new").exists()


# --- symbolic link loops ------------------------------------------------------------------------------------


def _download_registry(tmp_path: Path) -> Path:
    data = b'{"version": "1.1", "data": []}'
    (tmp_path / "d.json").write_bytes(data)
    entry = {"name": "d.json", "urls": [(tmp_path / "d.json").as_uri()], "bytes": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "kind": "json"}  # fmt: skip
    registry = {"datasets": {"d": {"license": "CC0", "description": "one file", "files": [entry]}}}
    (tmp_path / "registry.json").write_text(json.dumps(registry), encoding="utf-8")
    return tmp_path / "registry.json"


@pytest.mark.parametrize("command", ["convert", "pretrain", "report", "data download"])
def test_a_symlink_loop_as_output_is_one_line(
    command: str, tiny_sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ln -s lB lA; ln -s lA lB``: ``convert SRC lA``, ``--output_dir lA``, ``report --out lA``, ``data
    download --dir lA`` each stop with one line naming lA, exit 2, nothing written."""
    inputs = tmp_path / "inputs"
    wiki = write_wikitext(inputs / "wiki")
    make_study(inputs / "study")
    registry = _download_registry(inputs)
    loop = tmp_path / "lA"
    loop.symlink_to("lB")
    (tmp_path / "lB").symlink_to("lA")
    argv = {
        "convert": small_convert_argv(tiny_sources["roberta"], loop),
        "pretrain": small_lock_pretrain_argv(tiny_sources["roberta"], loop, wiki),
        "report": ["report", str(inputs / "study"), "--out", str(loop), "--resamples", "1000"],
        "data download": ["data", "download", "d", "--dir", str(loop), "--registry", str(registry)],
    }[command]
    before = tree_digests(tmp_path)
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"{loop}: a symbolic link loop (too many levels of symbolic links)" in line, line
    assert tree_digests(tmp_path) == before
