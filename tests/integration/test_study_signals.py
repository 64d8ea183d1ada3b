"""A `study run` owns its jobs: SIGKILL, SIGTERM or SIGINT of the runner leaves no process of a job alive
(checked by PID), the job is recorded as interrupted, and a rerun gives what an uninterrupted study gives; a
job's folder still used by a process that is not the runner's own child is waited for, never failed."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from helpers import lock_held_elsewhere, tiny_spec
from longify.study.jobs import Job, plan_jobs
from longify.study.runner import job_status
from longify.study.spec import load_spec

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# the long model's pretraining runs long enough (16 steps) to be stopped after its first checkpoint
PRETRAIN = "pretrain-*"  # --only: the long model's pretraining and its convert
SLOW_PRETRAIN = {
    "max_steps: 4": "max_steps: 16",
    "save_steps: 2": "save_steps: 4",
    "eval_steps: 2": "eval_steps: 8",
}


def _argv(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "longify.cli", "study", "run", str(spec), "--output_dir", str(out)]


def _state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _descendants(root: int) -> set[int]:
    """Live processes below ``root``, from /proc (an independent look: not the guard's own code)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return {pid for pid in found if _alive(pid)}


def _gone_within(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.time() + seconds
    while (left := {p for p in pids if _alive(p)}) and time.time() < deadline:
        time.sleep(0.1)
    return left


def _wait_for(what, timeout: float = 180.0, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := what():
            return value
        assert proc is None or proc.poll() is None, "the study run ended early"
        time.sleep(0.05)
    raise AssertionError("timed out")


def _record(out: Path, job: Job) -> dict:
    try:
        return json.loads((out / "jobs" / job.folder / "job.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture(scope="module")
def slow_spec(tmp_path_factory, tiny_sources) -> tuple[Path, dict[str, Job]]:
    tmp = tmp_path_factory.mktemp("signals")
    spec = tiny_spec(tmp, tiny_sources["roberta"])
    text = spec.read_text()
    for old, new in SLOW_PRETRAIN.items():
        text = text.replace(old, new)
    spec.write_text(text)
    return spec, {j.stage: j for j in plan_jobs(load_spec(spec)) if j.model == "tiny-256"}


@pytest.fixture(scope="module")
def uninterrupted(slow_spec) -> Path:
    """The long model's convert and pretrain jobs, run without a stop."""
    spec, _ = slow_spec
    out = spec.parent / "uninterrupted"
    run = subprocess.run([*_argv(spec, out), "--only", PRETRAIN], env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def _weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_study_run_stops_its_job_and_a_rerun_gives_the_same_results(
    slow_spec, uninterrupted, tmp_path, sig
) -> None:
    """SIGKILL, SIGTERM or SIGINT sent to the runner alone ends its pretraining job too (no orphan holds the
    job's lock or writes into its log), and a rerun gives the uninterrupted study's weights."""
    spec, jobs = slow_spec
    out = tmp_path / "out"
    pretrain, convert = jobs["pretrain"], jobs["convert"]
    shutil.copytree(uninterrupted / "jobs" / convert.folder, out / "jobs" / convert.folder)  # done earlier
    runner = subprocess.Popen([*_argv(spec, out), "--only", PRETRAIN], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _wait_for(lambda: _record(out, pretrain).get("status") == "running", proc=runner)
        _wait_for(lambda: list(pretrain.output(out).glob("checkpoint-*")), proc=runner)
        job_processes = _descendants(runner.pid)
        assert job_processes, "the pretraining runs below the study run"
        for pid in job_processes:  # hold the job still (deterministic: it cannot end before the signal)
            os.kill(pid, signal.SIGSTOP)
        os.kill(runner.pid, sig)  # the runner alone, as `kill`, `timeout` or the OOM killer do
        time.sleep(0.2)
        for pid in job_processes:
            os.kill(pid, signal.SIGCONT)
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not _gone_within(job_processes), "a process of the job outlived the study run"
    # an orphan that trained on would have finished within that wait (16 tiny steps): it must not have
    assert not (pretrain.output(out) / "model.safetensors").exists(), "the job trained on to its end"
    assert job_status(out, pretrain) == "interrupted"
    if sig != signal.SIGKILL:
        assert runner.returncode == 128 + sig
        line = f"study run interrupted by {sig.name} during {pretrain.folder}; rerun to resume"
        assert err.strip().splitlines()[-1] == f"longify: {line}", err
        assert _record(out, pretrain)["status"] == "interrupted"
    if sig == signal.SIGINT:
        return  # the same path as SIGTERM's from here: one rerun less for the suite
    rerun = subprocess.run([*_argv(spec, out), "--only", PRETRAIN], env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    mine, base = _weights(pretrain.output(out)), _weights(pretrain.output(uninterrupted))
    assert mine.keys() == base.keys() and all((mine[k] == base[k]).all() for k in base)
    log = (out / "jobs" / pretrain.folder / "log.txt").read_text()
    assert log.count("=== ") >= 2 and "Traceback" not in log.split("=== ")[-1]


def test_a_job_folder_used_by_another_process_is_waited_for_not_failed(tmp_path, tiny_sources) -> None:
    """A job whose folder's lock is held by a process that is not the runner's child is waited for, said in
    one line naming that process, never recorded as failed; it then runs, and so do its dependents."""
    spec = tiny_spec(tmp_path, tiny_sources["roberta"], long=False)
    train = next(j for j in plan_jobs(load_spec(spec)) if j.stage == "train")
    out = tmp_path / "out"
    said = tmp_path / "said.txt"
    with lock_held_elsewhere(train.output(out)) as holder, open(said, "w") as console:
        runner = subprocess.Popen(_argv(spec, out), env=ENV, stdout=console, stderr=subprocess.STDOUT)
        _wait_for(lambda: "waiting" in said.read_text(), timeout=60, proc=runner)
        waiting = [line for line in said.read_text().splitlines() if "waiting" in line]
        assert len(waiting) == 1 and f"pid {holder.pid}" in waiting[0] and train.folder in waiting[0], waiting
        time.sleep(1.5)  # it keeps waiting: no record of a failure, nothing run
        assert runner.poll() is None and not (out / "jobs" / train.folder / "job.json").exists()
    assert runner.wait(timeout=120) == 0, said.read_text()
    rest = said.read_text()
    assert "2 done" in rest and job_status(out, train) == "done"


WORKER_JOB = """
import os, subprocess, sys, time
# as torchrun starts its workers: in a session of their own, out of the job's process group
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(os.getpid(), worker.pid, flush=True)
time.sleep(300)
"""
FAKE_RUNNER = """
import os, sys
from longify.study.stopping import start_guarded, wait_guarded
proc, alive = start_guarded([sys.executable, "-c", sys.argv[1]], sys.stdout, dict(os.environ))
wait_guarded(proc, alive)
"""


def test_a_job_s_workers_in_their_own_session_die_with_the_runner() -> None:
    """torchrun's workers are in sessions of their own: a kill of the job's process group, or PDEATHSIG of
    its leader alone, leaves them running; the job's guard kills every process below it."""
    runner = subprocess.Popen([sys.executable, "-c", FAKE_RUNNER, WORKER_JOB], env=ENV, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)  # fmt: skip
    try:
        ready, _, _ = select.select([runner.stdout], [], [], 60)
        assert ready
        job, worker = (int(x) for x in runner.stdout.readline().split())
        processes = _descendants(runner.pid)
        assert {job, worker} < processes and os.getsid(worker) == worker != os.getsid(job)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not _gone_within(processes, 5.0)


IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(os.getpid(), flush=True)
time.sleep(300)
"""


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch) -> None:
    """SIGTERM is passed on to the job; one that does not end within the grace period is killed."""
    from longify.study import stopping

    monkeypatch.setattr(stopping, "STOP_GRACE_SECONDS", 1.0)
    log_path = tmp_path / "log.txt"
    with (
        open(log_path, "w") as log,
        pytest.raises(stopping.Interrupted) as stopped,
        stopping.stop_on_signals(),
    ):
        proc, alive = stopping.start_guarded([sys.executable, "-c", IGNORES_SIGTERM], log, dict(ENV))
        job = int(_wait_for(lambda: log_path.read_text().strip(), timeout=60))
        os.kill(os.getpid(), signal.SIGTERM)
        t0 = time.time()
        assert stopping.wait_guarded(proc, alive) != 0
        assert 1.0 <= time.time() - t0 < 15.0
    assert stopped.value.exit_code == 143 and not _alive(job) and not _alive(proc.pid)


def test_a_job_recorded_as_running_by_a_live_process_is_busy(tmp_path, tiny_sources) -> None:
    """job.json says running and names a live job process (left by a run on this host): the job is busy until
    that process ends; a PID of a process that ended, or used again by another process, is not."""
    from longify.study.runner import JOB_FILE, busy_with, job_record, process_start

    spec = tiny_spec(tmp_path, tiny_sources["roberta"], long=False)
    job = next(j for j in plan_jobs(load_spec(spec)) if j.stage == "train")
    out = tmp_path / "out"
    (out / "jobs" / job.folder).mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for started, busy in ((process_start(other.pid), True), ("1", False)):  # "1": another process's PID
            record = job_record(job, "running", pid=other.pid, job_pid=other.pid, job_pid_started=started)
            (out / "jobs" / job.folder / JOB_FILE).write_text(json.dumps(record))
            found = busy_with(out, job)
            assert (found is not None and found[1] == [other.pid] and str(other.pid) in found[0]) == busy, (
                found
            )
    finally:
        other.kill()
        other.wait()
    record = job_record(job, "running", pid=other.pid, job_pid=other.pid, job_pid_started=None)
    (out / "jobs" / job.folder / JOB_FILE).write_text(json.dumps(record))
    assert busy_with(out, job) is None
