"""Checkpoint integrity: a checkpoint whose content changed since its save is never resumed from or exported.

Each save records the SHA-256 of every file in its completion mark; resuming verifies them, and the step in
``trainer_state.json`` against the folder name and the mark. On checkpoints written without training
(``helpers.fake_checkpoint``): marks of earlier versions (sizes, no hashes) are checked by size and step, an explicit
``--resume_from_checkpoint`` of a damaged checkpoint is refused, a damaged mark is a damaged checkpoint, and
``export`` of a damaged checkpoint is refused. Real runs: tests/integration/test_checkpoint_integrity_runs.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import fake_checkpoint, one_line, read_json
from longify.checkpoint_files import MARK, newest_complete
from longify.cli import main
from longify.errors import LongifyError
from longify.training_run import resume_checkpoint


def test_old_marks_without_hashes_are_checked_by_size_and_step(tmp_path: Path, caplog) -> None:
    """A mark written by an earlier longify (sizes only) is still resumed from, with a warning saying the
    content was not verified; its trainer state must still say the step of its folder."""
    old = fake_checkpoint(tmp_path, 4)
    mark = read_json(old / MARK)
    mark.pop("sha256", None)
    mark.pop("step", None)
    (old / MARK).write_text(json.dumps(mark))
    with caplog.at_level(logging.INFO, logger="longify"):
        assert newest_complete(tmp_path) == old
    assert (
        f"{old}: its {MARK} has no sha256 (saved by an earlier longify): checked by size only" in caplog.text
    )
    (old / "trainer_state.json").write_text(json.dumps({"global_step": 9}))  # same size
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="longify"):
        assert newest_complete(tmp_path) is None
    assert f"skipping {old}: trainer_state.json says global_step 9, but it was saved at step 4" in caplog.text


def test_explicit_resume_of_a_damaged_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = fake_checkpoint(tmp_path, 4)
    (ckpt / "scheduler.pt").write_bytes(b"y" * 10)  # same size, other bytes
    with pytest.raises(LongifyError) as err:
        resume_checkpoint(tmp_path, requested=str(ckpt), overwrite=False)
    assert str(err.value) == (
        f"--resume_from_checkpoint {ckpt}: damaged checkpoint, scheduler.pt differs from its save (sha256); "
        "give another checkpoint-N folder"
    )


@pytest.mark.parametrize("damage", ["renamed", "not_an_object"])
def test_a_damaged_mark_is_a_damaged_checkpoint(damage: str, tmp_path: Path, caplog) -> None:
    """The mark is content too: one whose hashes name a file it never listed (a changed byte in a name), or
    that are not name -> hash, makes its checkpoint skipped or refused with one line, never a traceback."""
    ckpt = fake_checkpoint(tmp_path, 4)
    mark = read_json(ckpt / MARK)
    hashes = mark["sha256"]
    mark["sha256"] = (
        {("optimizeq.pt" if n == "optimizer.pt" else n): h for n, h in hashes.items()}
        if damage == "renamed"
        else sorted(hashes)
    )
    (ckpt / MARK).write_text(json.dumps(mark))
    with caplog.at_level(logging.INFO, logger="longify"):
        assert newest_complete(tmp_path) is None
    assert f"skipping {ckpt}: its {MARK} is damaged" in caplog.text
    with pytest.raises(LongifyError, match=f"damaged checkpoint, its {MARK} is damaged"):
        resume_checkpoint(tmp_path, requested=str(ckpt), overwrite=False)


def test_export_of_a_damaged_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    """``longify export`` of a checkpoint whose files differ from their save: refused, naming the file,
    before anything is loaded or written (never a clean-looking model made from flipped weights)."""
    ckpt = fake_checkpoint(tmp_path, 4)
    (ckpt / "model.safetensors").write_bytes(b"y" * 10)  # same size, other bytes
    out = tmp_path / "exported"
    assert main(["export", str(ckpt), str(out)]) == 2
    assert one_line(capsys) == (
        f"longify: error: {ckpt}: damaged checkpoint, model.safetensors differs from its save (sha256); "
        "export another checkpoint-N folder"
    )
    assert not out.exists()
