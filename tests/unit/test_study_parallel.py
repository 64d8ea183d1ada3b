"""`study run --parallel N`: up to N jobs at once, each started only once every job it depends on has ended
done (its dependents skipped otherwise, the others going on), a signal letting the running jobs end before
the run stops, and each job given its share of the cores. The jobs here are stand-ins (a function per job)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_spec
from longify.cli import main
from longify.study.jobs import Job, plan_jobs
from longify.study.runner import run_local, thread_env
from longify.study.spec import load_spec
from longify.study.stopping import Interrupted


@pytest.fixture
def jobs(tmp_path: Path) -> list[Job]:
    """A two-seed study: a short model and a converted, pretrained one, each fine-tuned and evaluated."""
    return plan_jobs(load_spec(tiny_spec(tmp_path, tmp_path / "src", seeds="[1, 2]")))


class StandIn:
    """Runs a job by sleeping a little; records when each ran and how many ran at once."""

    def __init__(self, fail: str = "", interrupt: str = "") -> None:
        self.fail, self.interrupt = fail, interrupt
        self.spans: dict[str, tuple[float, float]] = {}
        self.live = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, job: Job, out: Path, all_jobs: dict[str, Job]) -> dict[str, Any]:
        with self.lock:
            self.live += 1
            self.most = max(self.most, self.live)
        start = time.monotonic()
        time.sleep(0.05)
        with self.lock:
            self.live -= 1
            self.spans[job.id] = (start, time.monotonic())
        if job.stage == self.interrupt:
            raise Interrupted(15, job.folder)
        return {"status": "failed" if job.stage == self.fail else "done"}


def run(jobs: list[Job], out: Path, stand_in: StandIn, parallel: int) -> tuple[dict[str, str], list[str]]:
    lines: list[str] = []
    status = run_local(
        jobs,
        out,
        {j.id: j for j in jobs},
        report=lambda i, n, job, record: lines.append(f"{i}/{n} {record['status']}"),
        run=stand_in,
        parallel=parallel,
    )
    return status, lines


def test_up_to_n_jobs_at_once_each_after_its_dependencies(jobs: list[Job], tmp_path: Path) -> None:
    stand_in = StandIn()
    status, lines = run(jobs, tmp_path / "out", stand_in, parallel=2)
    assert set(status.values()) == {"done"} and len(status) == len(jobs)
    assert stand_in.most == 2  # the two seeds' fine-tuning of the short model run side by side
    for job in jobs:
        for dep in job.deps:
            assert stand_in.spans[dep][1] <= stand_in.spans[job.id][0], f"{job.folder} started before {dep}"
    assert lines == [f"{i}/{len(jobs)} done" for i in range(1, len(jobs) + 1)]


def test_a_failed_job_skips_its_dependents_and_the_others_go_on(jobs: list[Job], tmp_path: Path) -> None:
    """The same final statuses as one job at a time."""
    side_by_side, _ = run(jobs, tmp_path / "a", StandIn(fail="pretrain"), parallel=2)
    one_by_one, _ = run(jobs, tmp_path / "b", StandIn(fail="pretrain"), parallel=1)
    assert side_by_side == one_by_one
    by_id = {j.id: j for j in jobs}
    skipped = {by_id[i].model for i, s in side_by_side.items() if s == "skipped"}
    assert skipped == {"tiny-256"} and "done" in side_by_side.values()


def test_after_an_interrupted_job_no_job_starts_and_the_run_raises(jobs: list[Job], tmp_path: Path) -> None:
    stand_in = StandIn(interrupt="convert")
    with pytest.raises(Interrupted):
        run(jobs, tmp_path / "out", stand_in, parallel=2)
    stopped = next(j.id for j in jobs if j.stage == "convert")
    assert all(start <= stand_in.spans[stopped][1] for start, _ in stand_in.spans.values())


def test_each_job_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("longify.study.runner.cores", lambda: 8)
    assert thread_env(1) == {}  # one job at a time: torch's own default
    assert thread_env(2) == {"OMP_NUM_THREADS": "4"}
    assert thread_env(16) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_env(2) == {}  # the caller's setting holds


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--parallel", "0"], "argument --parallel: expected a positive integer, got 0"),
        (["--parallel", "2", "--executor", "slurm"], "--parallel: for the local executor; Slurm runs"),
    ],
)
def test_bad_parallel_flags_get_one_line(flags, line, tmp_path: Path, capsys) -> None:
    spec = tiny_spec(tmp_path, tmp_path / "src")
    assert main(["study", "run", str(spec), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert line in err[-1]
    assert not (tmp_path / "out").exists()
