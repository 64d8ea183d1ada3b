"""Checkpoints on disk, without training (``helpers.fake_checkpoint``): resume takes the newest complete one,
skipping unfinished and damaged ones; an explicit resume of an incomplete checkpoint, or of one with newer
ones beside it, is one line; rotation counts complete checkpoints only and never deletes the one just
written; ``--overwrite_output_dir`` deletes nothing before the inputs load and then clears every output of
the previous run; QA's span loss does not depend on padding. Killed and rerun runs:
tests/integration/test_crash_safe_runs.py."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from helpers import fake_checkpoint, qa_train_argv
from longify.errors import LongifyError
from longify.qa.args import parse_qa_args
from longify.qa.train import train_qa


def test_newest_complete_skips_unfinished_and_damaged_ones(tmp_path: Path, caplog) -> None:
    from longify.checkpoint_files import newest_complete

    fake_checkpoint(tmp_path, 2)
    good = fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 6, skip=("rng_state.pth",))  # removed after the save
    fake_checkpoint(tmp_path, 8, mark=False)  # killed before the mark
    fake_checkpoint(tmp_path, 10, mark=False, skip=("optimizer.pt", "scheduler.pt", "trainer_state.json"))
    (tmp_path / "checkpoint-12").write_text("not a folder")
    with caplog.at_level(logging.INFO, logger="longify"):
        assert newest_complete(tmp_path) == good
    log = caplog.text
    assert "checkpoint-10: trainer_state.json, optimizer.pt, scheduler.pt are missing" in log
    assert "checkpoint-8: no longify_checkpoint.json" in log
    assert "checkpoint-6: rng_state.pth is missing" in log
    assert "checkpoint-2" not in log
    assert newest_complete(tmp_path / "nothing-here") is None


def test_explicit_resume_of_an_incomplete_checkpoint_is_one_line(tmp_path: Path, caplog) -> None:
    from longify.training_run import resume_checkpoint

    ckpt = fake_checkpoint(tmp_path, 4, skip=("optimizer.pt",))
    with pytest.raises(
        LongifyError, match=r"checkpoint-4: incomplete checkpoint, optimizer.pt is missing"
    ) as err:
        resume_checkpoint(tmp_path, requested=str(ckpt), overwrite=False)
    assert "\n" not in str(err.value)
    with pytest.raises(LongifyError, match="no such checkpoint folder"):
        resume_checkpoint(tmp_path, requested=str(tmp_path / "checkpoint-99"), overwrite=False)
    legacy = fake_checkpoint(tmp_path, 6, mark=False)  # a plain HF checkpoint: taken when asked for
    assert resume_checkpoint(tmp_path, requested=str(legacy), overwrite=False) == str(legacy)
    assert resume_checkpoint(tmp_path, requested=None, overwrite=False) is None  # never automatically
    assert resume_checkpoint(tmp_path, requested=None, overwrite=True) is None
    assert legacy.is_dir() and ckpt.is_dir()  # --overwrite_output_dir alone deletes nothing


def test_rotation_counts_complete_checkpoints_only(tmp_path: Path) -> None:
    from longify.checkpoints import rotate

    for step in (2, 4, 6, 8):
        fake_checkpoint(tmp_path, step)
    fake_checkpoint(tmp_path, 5, mark=False)
    fake_checkpoint(tmp_path, 7, skip=("optimizer.pt",))
    fake_checkpoint(tmp_path, 10, mark=False)  # newer than any complete one: another save's, left alone
    rotate(tmp_path, 2, None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-6", "checkpoint-8"]
    rotate(tmp_path, 1, str(tmp_path / "checkpoint-6"), 1)  # the best one stays beside the newest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-6", "checkpoint-8"]
    rotate(tmp_path, 1, None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-8"]


# ----------------------------------------------------------------------------------------- qa train


def test_qa_overwrite_deletes_nothing_before_the_inputs_load(qa_setup, tmp_path) -> None:
    out = tmp_path / "out"
    earlier = fake_checkpoint(out, 3)
    cmd = qa_train_argv(qa_setup, out, "--overwrite_output_dir")
    cmd[cmd.index("--train_file") + 1] = str(qa_setup["root"] / "train.typo.json")
    with pytest.raises(LongifyError, match=r"train\.typo\.json"):
        train_qa(parse_qa_args(cmd))
    assert (earlier / "optimizer.pt").is_file()


# ------------------------------------------------------------------------ --overwrite_output_dir and rotation


def test_overwrite_clears_every_output_of_the_previous_run(tmp_path: Path) -> None:
    from longify.locks import INSIDE_NAME
    from longify.training_run import clear_previous_run

    out = tmp_path / "out"
    fake_checkpoint(out, 3)
    run_files = ["results.json", "predictions.json", "nbest_predictions.json", "config.json",
                 "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.json", "merges.txt", "README.md", "longify_run.json", "pretrain_metrics.json"]  # fmt: skip
    for name in [*run_files, INSIDE_NAME, "runs/Nov01/events.out.tfevents.1", "notes.txt"]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}")
    clear_previous_run(out)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == [INSIDE_NAME, "notes.txt", "runs/Nov01/events.out.tfevents.1"]
    # fine-tuning the model of the folder itself: its files stay until the new model replaces them
    for name in ["config.json", "model.safetensors", "results.json"]:
        (out / name).write_text("{}")
    clear_previous_run(out, source=str(out))
    assert (
        sorted(p.name for p in out.glob("*.json")) == ["config.json"]
        and (out / "model.safetensors").is_file()
    )


def test_explicit_resume_with_newer_checkpoints_beside_it_is_refused(tmp_path: Path) -> None:
    from longify.training_run import resume_checkpoint

    four = fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 12)
    with pytest.raises(
        LongifyError, match=r"newer checkpoints \(checkpoint-12\).*--overwrite_output_dir"
    ) as err:
        resume_checkpoint(tmp_path, requested=str(four), overwrite=False)
    assert "\n" not in str(err.value)
    with pytest.raises(LongifyError, match="which --overwrite_output_dir clears"):
        resume_checkpoint(tmp_path, requested=str(four), overwrite=True)
    elsewhere = tmp_path / "other"
    copy = shutil.copytree(four, elsewhere / "checkpoint-4")
    assert resume_checkpoint(tmp_path, requested=str(copy), overwrite=True) == str(copy)
    assert resume_checkpoint(elsewhere, requested=str(copy), overwrite=False) == str(copy)


def test_rotation_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    from longify.checkpoints import rotate

    fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 12)  # left from an earlier run
    eight = fake_checkpoint(tmp_path, 8)  # just saved by this one
    rotate(tmp_path, 1, None, 1, eight)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-8"]
