"""Locks held by real processes: a study run holds its folder and its jobs (child processes) lock theirs inside
it, the demo's too, while a process not started to work inside it is refused; a running pretrain keeps its
``OUT/converted`` against ``convert --overwrite`` and another ``pretrain``."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    OTHER_HOLDER,
    held_by_other,
    one_error_line,
    small_convert_argv,
    small_lock_pretrain_argv,
    tree_digests,
    write_wikitext,
)
from longify.cli import main
from longify.locks import output_lock

ABOVE_ENV = "LONGIFY_LOCKS_ABOVE"  # (longify.locks.ABOVE_ENV, spelled out: the test also runs on old code)


# --- real processes -----------------------------------------------------------------------------------------

CHILD = """
import sys
from longify.locks import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
"""


def test_children_of_the_holder_lock_inside_its_folder(tmp_path: Path) -> None:
    """The study run holds the study folder and its jobs (child processes) lock their folders inside it; the
    demo too. A process that was not started to work inside it is refused."""
    from longify import locks

    out = tmp_path / "study"
    child = [sys.executable, "-c", CHILD, str(out / "jobs" / "x")]
    stranger = {k: v for k, v in os.environ.items() if k != ABOVE_ENV}
    with output_lock(out):
        done = subprocess.run(child, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "locked", done.stderr
        done = subprocess.run(child, capture_output=True, text=True, timeout=120, env=stranger)
        assert done.returncode != 0
        assert f"inside {out}, which another longify process uses (pid {os.getpid()} " in done.stderr
    assert ABOVE_ENV not in os.environ  # nothing held: nothing passed down
    # a Slurm job submitted by an earlier `study run` starts while a later one holds the study folder
    with held_by_other(out):
        done = subprocess.run(child, capture_output=True, text=True, timeout=120, env=stranger)
        assert done.returncode != 0 and f"(pid {OTHER_HOLDER['pid']} " in done.stderr
        admitted = {**stranger, **locks.admitting(out)}  # what the study runner gives each job
        done = subprocess.run(child, capture_output=True, text=True, timeout=120, env=admitted)
        assert done.returncode == 0 and done.stdout.strip() == "locked", done.stderr


PAUSED_PRETRAIN = """
import sys
from transformers import TrainerCallback
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain

class Pause(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        print("training", flush=True)
        sys.stdin.readline()

pretrain(parse_pretrain_args(sys.argv[1:]), callbacks=[Pause()])
"""


def test_a_running_pretrains_conversion_is_not_replaced(
    tiny_sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With real processes: a pretrain that converted its short model into OUT/converted and trains
    (paused at its first step) keeps that folder; ``convert ... OUT/converted --overwrite`` and ``pretrain
    --output_dir OUT/converted`` are refused in one line naming its PID, and it then finishes."""
    out = tmp_path / "run"
    wiki = write_wikitext(tmp_path / "wiki")
    argv = small_lock_pretrain_argv(tiny_sources["roberta"], out, wiki)[1:]
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_PRETRAIN, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready and proc.stdout.readline().strip() == "training"
        converted = out / "converted"
        before = tree_digests(converted)
        assert (converted / "conversion.json").is_file()
        assert main(small_convert_argv(tiny_sources["bert"], converted, "--overwrite")) == 2
        line = one_error_line(capsys)
        assert f"{converted}: inside {out}" in line and f"pid {proc.pid} " in line, line
        assert (
            main(small_lock_pretrain_argv(tiny_sources["roberta"], converted, wiki, "--overwrite_output_dir"))
            == 2
        )
        assert f"pid {proc.pid} " in one_error_line(capsys)
        assert tree_digests(converted) == before
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=300) == 0
    finally:
        proc.kill()
        proc.wait()
    assert (out / "pretrain_metrics.json").is_file() and tree_digests(converted) == before
