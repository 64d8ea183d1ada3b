"""Run a study's jobs in dependency order: each job a subprocess (torchrun for several GPUs) writing its own
``log.txt``, ``command.txt`` and, last and atomically, ``job.json``. Done jobs are skipped; a failed job is
recorded with the last line of its error and its dependents are skipped; the others go on. ``--parallel N``
runs up to N jobs side by side, each given its share of the CPU cores (``OMP_NUM_THREADS``)."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from longify.artifacts import PREDICTIONS_FILE, PRETRAIN_METRICS_FILE, QUESTION_SCORES_FILE, RESULTS_FILE
from longify.fileio import write_json_atomic
from longify.locks import admitting, describe, lock_holder, pid_alive
from longify.runinfo import now_iso
from longify.study.jobs import Job, job_argv
from longify.study.squeue import slurm_status
from longify.study.stopping import STOP, start_guarded, wait_guarded

JOB_FILE = "job.json"


def job_dir(out: Path, job: Job) -> Path:
    return out / "jobs" / job.folder


def read_job(out: Path, job: Job) -> dict[str, Any] | None:
    try:
        record = json.loads((job_dir(out, job) / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("id") == job.id else None


def job_status(out: Path, job: Job) -> str:
    """done / failed / skipped / submitted (in Slurm's queue) / running / interrupted (its process or Slurm
    job ended without a final record) / pending."""
    record = read_job(out, job)
    if record is None:
        return "pending"
    status = str(record.get("status"))
    if status in ("running", "submitted"):
        return live_status(record)
    return status


def live_status(record: dict[str, Any]) -> str:
    """Whether a job recorded as submitted or running still is: its process when it runs on this host,
    else Slurm's queue for a Slurm job (as recorded where there is no ``squeue``), else as recorded."""
    status = str(record.get("status"))
    if record.get("pid") is not None and record.get("host", socket.gethostname()) == socket.gethostname():
        # the study run's (its job's guard, ``job_pid``, ends with it: a rerun waits for it in wait_while_busy)
        return status if _alive(record["pid"]) else "interrupted"
    if record.get("slurm_job_id"):
        queued = slurm_status(str(record["slurm_job_id"]))
        if queued is None:
            return status
        return "interrupted" if queued == "gone" else "submitted" if queued == "queued" else "running"
    return status


def _alive(pid: Any, started: Any = None) -> bool:
    """Whether ``pid`` is a running process here (a zombie, dead but not yet reaped, is not), and the one that
    started at ``started`` (``process_start``) when that is given: not another that got its PID since."""
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: as far as kill(pid, 0) tells
    return stat[0] not in ("Z", "X") and (started is None or stat[19] == started)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), None without them."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot, from /proc), so that a PID used again is told apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def last_error_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("longify: error:")]
    return (errors or lines or ["no output"])[-1]


def job_record(job: Job, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "stage": job.stage,
        "model": job.model,
        "eval_set": job.eval_set,
        "task": job.task,
        "seed": job.seed,
        "source_model": job.source_model,
        "deps": list(job.deps),
        "status": status,
        **extra,
    }


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_env(parallel: int) -> dict[str, str]:
    """The environment that gives each of ``parallel`` jobs its share of the cores (none for one job at a time,
    nor where the caller set OMP_NUM_THREADS: theirs holds)."""
    if parallel <= 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cores() // parallel))}


def execute(job: Job, out: Path, jobs: dict[str, Job], parallel: int = 1) -> dict[str, Any]:
    """Run one job as a subprocess under its guard (no process of it outlives this one); its output goes to
    ``log.txt``; ``job.json`` is written last. SIGTERM / SIGINT under ``stop_on_signals``: the job is stopped,
    recorded as ``interrupted`` and :class:`Interrupted` is raised. ``parallel``: how many jobs run side by side
    (this one gets its share of the cores)."""
    folder = job_dir(out, job)
    folder.mkdir(parents=True, exist_ok=True)
    argv = job_argv(job, out, jobs)
    (folder / "command.txt").write_text(shlex.join(argv) + "\n", encoding="utf-8")
    STOP.check(None)  # a signal came before this job started
    started, t0 = now_iso(), time.perf_counter()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **thread_env(parallel),
        **admitting(out),
    }  # (a Slurm job: whoever holds OUT then)
    with open(folder / "log.txt", "a", encoding="utf-8") as log:
        log.write(f"=== {started} {shlex.join(argv)}\n")
        log.flush()
        proc, alive = start_guarded(argv, log, env)
        where = {
            "pid": os.getpid(),
            "job_pid": proc.pid,  # its guard: the job's processes live no longer than it
            "job_pid_started": process_start(proc.pid),
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        write_json_atomic(folder / JOB_FILE, job_record(job, "running", **where, started=started))
        rc = wait_guarded(proc, alive)
        signum = STOP.signum
        if signum is not None:
            log.write(f"=== {now_iso()} stopped: the study run got {signal.Signals(signum).name}\n")
    seconds = round(time.perf_counter() - t0, 2)
    timing = {"started": started, "finished": now_iso(), "seconds": seconds, "returncode": rc}
    output = job.output(out)
    if signum is not None:  # stopped: whatever it says, it may not have finished its work
        record = job_record(job, "interrupted", **timing, signal=signal.Signals(signum).name)
    elif rc == 0:
        record = job_record(job, "done", **timing, outputs=outputs_of(job, output))
    else:
        record = job_record(job, "failed", **timing, error=last_error_line(folder / "log.txt"))
    write_json_atomic(folder / JOB_FILE, record)
    STOP.check(job.folder)
    return record


def busy_with(out: Path, job: Job) -> tuple[str, list[int]] | None:
    """Who else still runs ``job`` (not a child of this run): the job process its ``job.json`` names, alive on
    this host, or the holder of its output folder's lock; with the PIDs to see end. None when nobody does."""
    record = read_job(out, job) or {}
    here = record.get("host", socket.gethostname()) == socket.gethostname()
    job_pid = record.get("job_pid")
    if record.get("status") == "running" and here and _alive(job_pid, record.get("job_pid_started")):
        return f"pid {job_pid} (its job.json says running)", [job_pid]
    holder = lock_holder(job.output(out))
    if holder is None:
        return None
    pid = holder.get("pid")
    pids = [pid] if isinstance(pid, int) and holder.get("host") == socket.gethostname() else []
    return describe(holder), pids


def wait_while_busy(out: Path, job: Job, poll: float = 1.0) -> None:
    """Wait (one line said) until no process outside this run runs ``job`` or writes its log any more."""
    seen: set[int] = set()
    said = False
    while True:
        busy = busy_with(out, job)
        if busy is not None:
            seen.update(busy[1])
            if not said:
                print(
                    f"study: {job.folder} is still run by {busy[0]}, not by this study run; "
                    "waiting for it to end",
                    flush=True,
                )
                said = True
        elif not any(_alive(pid) for pid in seen):
            return
        STOP.check(job.folder)
        time.sleep(poll)


def outputs_of(job: Job, output: Path) -> dict[str, str]:
    names = {
        "pretrain": (PRETRAIN_METRICS_FILE,),
        "train": (RESULTS_FILE, PREDICTIONS_FILE, QUESTION_SCORES_FILE),
        "evaluate": (RESULTS_FILE, PREDICTIONS_FILE, QUESTION_SCORES_FILE),
    }.get(job.stage, ())
    found = {"output": str(output)}
    found.update({n: str(output / n) for n in names if (output / n).is_file()})
    return found


def select(jobs: list[Job], only: str | None) -> list[Job]:
    """Jobs whose folder, id or model matches ``only`` (a glob), with every job they depend on."""
    if not only:
        return jobs
    by_id = {j.id: j for j in jobs}
    wanted = {j.id for j in jobs if any(fnmatch.fnmatch(str(v), only) for v in (j.folder, j.id, j.model))}
    stack = list(wanted)
    while stack:
        for dep in by_id[stack.pop()].deps:
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return [j for j in jobs if j.id in wanted]


Report = Callable[[int, int, Job, dict[str, Any]], None]


def progress_line(i: int, n: int, job: Job, record: dict[str, Any]) -> None:
    status = record["status"]
    detail = f"{record['seconds']:.1f} s" if "seconds" in record and status != "done (earlier)" else ""
    if status == "failed":
        detail = f"{detail}: {record.get('error')}"
    elif status == "skipped":
        detail = record.get("reason", "")
    print(f"[{i:>{len(str(n))}}/{n}] {status:<14} {job.folder} {detail}".rstrip(), flush=True)


def done_earlier(out: Path, job: Job) -> dict[str, Any] | None:
    """The progress record of a job finished by an earlier run (never redone), else None."""
    return {"status": "done (earlier)"} if job_status(out, job) == "done" else None


def skip(out: Path, job: Job, blocker: Job) -> dict[str, Any]:
    """Record ``job`` as skipped because ``blocker`` (one of its dependencies) did not finish."""
    record = job_record(job, "skipped", reason=f"needs {blocker.folder}")
    write_json_atomic(job_dir(out, job) / JOB_FILE, record)
    return record


Run = Callable[[Job, Path, dict[str, Job]], dict[str, Any]]


def run_local(
    jobs: list[Job],
    out: Path,
    all_jobs: dict[str, Job],
    report: Report = progress_line,
    run: Run = execute,
    parallel: int = 1,
) -> dict[str, str]:
    """Run pending jobs one after another, or up to ``parallel`` at a time (``run``: how one job is run);
    returns job id -> final status."""
    if parallel > 1:
        return _run_side_by_side(jobs, out, all_jobs, report, run, parallel)
    status: dict[str, str] = {}
    for i, job in enumerate(jobs, 1):
        if (earlier := done_earlier(out, job)) is not None:
            status[job.id] = "done"
            report(i, len(jobs), job, earlier)
            continue
        bad = [d for d in job.deps if status.get(d, job_status(out, all_jobs[d])) != "done"]
        if not bad:
            wait_while_busy(out, job)
        record = skip(out, job, all_jobs[bad[0]]) if bad else run(job, out, all_jobs)
        status[job.id] = record["status"]
        report(i, len(jobs), job, record)
    return status


def _run_side_by_side(
    jobs: list[Job], out: Path, all_jobs: dict[str, Job], report: Report, run: Run, parallel: int
) -> dict[str, str]:
    """``run_local`` with up to ``parallel`` jobs at once, each started, in the jobs' order, once every job it
    depends on has ended (skipped if one did not end done). Progress lines come as jobs end, numbered in that
    order. After a signal no job starts; the running ones end (recorded as interrupted) and the first
    exception of a job (:class:`Interrupted`) is raised once all have ended."""
    status: dict[str, str] = {}
    chosen = {j.id for j in jobs}
    pending = list(jobs)
    running: dict[Future[dict[str, Any]], Job] = {}
    errors: list[BaseException] = []
    ended = 0

    def end(job: Job, record: dict[str, Any], state: str) -> None:
        nonlocal ended
        status[job.id] = state
        ended += 1
        report(ended, len(jobs), job, record)

    def dep_status(dep: str) -> str | None:
        """A dependency's final status; None while it may still run in this study run."""
        if dep in status:
            return status[dep]
        return None if dep in chosen else job_status(out, all_jobs[dep])

    def one(job: Job) -> dict[str, Any]:
        wait_while_busy(out, job)
        return run(job, out, all_jobs)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="study-job") as pool:
        while pending or running:
            before = len(pending)
            for job in list(pending) if not errors and STOP.signum is None else []:
                if len(running) >= parallel:
                    break
                if (earlier := done_earlier(out, job)) is not None:
                    pending.remove(job)
                    end(job, earlier, "done")
                    continue
                deps = {d: dep_status(d) for d in job.deps}
                if None in deps.values():
                    continue
                pending.remove(job)
                if bad := [d for d, s in deps.items() if s != "done"]:
                    record = skip(out, job, all_jobs[bad[0]])
                    end(job, record, record["status"])
                    continue
                running[pool.submit(one, job)] = job
            if not running:
                if len(pending) < before:
                    continue  # jobs ended without running (done earlier, skipped): look again
                break
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    record = future.result()
                except BaseException as err:  # Interrupted among them: raised once all have ended
                    errors.append(err)
                    continue
                end(job, record, record["status"])
    if errors:
        raise errors[0]
    return status
