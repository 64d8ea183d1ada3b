"""Read-only and full disks are one line naming the path, exit 2, nothing half-written: a read-only output
folder for every command (refused up front), a full disk under the data cache, ``convert`` and a JSON file
(which keeps its old content); TensorBoard events stay in their own run's folder.

Real faults: tmpfs mounts made by the test (the ``tmpfs`` fixture; root may mount here). Where that is
impossible the test skips and says why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import CONVERT, WIKI, every_command, one_line
from longify.cli import main
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.mlm import data as mlm_data

# -- output folders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["convert", "export", "pretrain", "qa train", "qa evaluate"])
def test_read_only_output_folder_is_one_line_up_front(command, tiny_sources, long_model, tmp_path, tmpfs,
                                                      capsys) -> None:  # fmt: skip
    ro = tmpfs(tmp_path / "ro", "ro,size=64k")  # a read-only file system
    # convert/export make OUT beside it (in ro); the others write into an existing read-only --output_dir
    out = ro / "out" if command in ("convert", "export") else ro
    assert main(every_command(tiny_sources["roberta"], long_model, out)[command]) == 2
    line = one_line(capsys)
    assert str(out) in line and "read-only file system" in line, line
    assert not (tmp_path / ".ro.lock").exists()


# -- the data cache and full disks -----------------------------------------------------------------


def _blocks(tokenizer, cache: Path, source: Path = WIKI):
    return mlm_data.load_blocks(str(source), tokenizer, 64, cache_dir=str(cache))


def test_full_disk_data_cache_is_one_line_and_leaves_nothing(tiny_sources, tmp_path, tmpfs) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    full = tmpfs(tmp_path / "full", "size=32k")
    source = tmp_path / "train.raw"
    source.write_text(WIKI.read_text() * 4)  # more blocks than 32 KB hold
    with pytest.raises(LongifyError, match=r"no space left on the disk .* \(the data cache"):
        _blocks(tok, full, source)
    assert [p.name for p in full.iterdir()] == []


def test_full_disk_convert_is_one_line_and_leaves_nothing(tiny_sources, tmp_path, tmpfs, capsys) -> None:
    full = tmpfs(tmp_path / "full", "size=64k")  # the model is ~1 MB
    assert main(["convert", str(tiny_sources["roberta"]), str(full / "long"), *CONVERT]) == 2
    line = one_line(capsys)
    assert f"{full / 'long'}: no space left on the disk" in line, line
    assert list(full.iterdir()) == []


def test_full_disk_json_keeps_the_old_file(tmp_path, tmpfs) -> None:
    full = tmpfs(tmp_path / "full", "size=8k")
    write_json_atomic(full / "results.json", {"old": 1})
    with pytest.raises(LongifyError, match=r"results\.json: no space left on the disk"):
        write_json_atomic(full / "results.json", {"new": "x" * 100_000})
    assert json.loads((full / "results.json").read_text()) == {"old": 1}
    assert [p.name for p in full.iterdir()] == ["results.json"]


# -- TensorBoard -----------------------------------------------------------------------------------


def _events(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


def test_tensorboard_events_stay_in_their_own_run(long_model, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    base = ["pretrain", "--model_name_or_path", str(long_model), "--train_file_path", str(WIKI), "--do_train",
            "--max_steps", "1", "--logging_steps", "1", "--block_size", "64", "--report_to", "tensorboard"]  # fmt: skip
    assert main([*base, "--output_dir", str(tmp_path / "one"), "--logging_dir", str(tmp_path / "logs1")]) == 0
    assert main([*base, "--output_dir", str(tmp_path / "two")]) == 0
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ
    one, two = _events(tmp_path / "logs1"), _events(tmp_path / "two")
    assert len(one) == 1 and len(two) == 1, (one, two)  # the second run's events in its own folder
    assert not (tmp_path / "runs").exists() and not _events(tmp_path / "one")
