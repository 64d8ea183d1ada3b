"""``--executor slurm``: each pending job submitted through submitit after the jobs it depends on (Slurm
``afterok``, with ``--kill-on-invalid-dep=yes`` so that a failed job's dependents leave the queue instead of
waiting forever); resources from the spec's ``slurm`` mapping (submitit's parameter names) and the job's
GPUs (``gpus: 0``: no GPU request).

Each submission is recorded at once in the job's ``job.json`` (status ``submitted``, its Slurm job id), so a
second ``study run`` never submits a job that is still queued or running; it waits on it instead. A job
that fails makes its Slurm job fail (so ``afterok`` holds its dependents back). ``--wait`` follows the jobs
until all have ended, one line each as they do, then collects the results.

A submitit ``LocalExecutor`` (same API, no cluster; tests) runs the jobs one after another.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import shutil
import time
import typing
from pathlib import Path
from typing import Any

from longify.errors import LongifyError, first_line
from longify.fileio import write_json_atomic
from longify.runinfo import now_iso
from longify.study.jobs import Job
from longify.study.runner import (
    JOB_FILE,
    Report,
    done_earlier,
    execute,
    job_dir,
    job_record,
    job_status,
    progress_line,
    read_job,
    run_local,
    skip,
)

POLL_SECONDS = 10.0
ENDED = ("done", "failed", "skipped", "interrupted")


class JobFailed(RuntimeError):
    """Raised inside a Slurm job whose command failed, so that Slurm marks it FAILED."""


def _run_one(job: Job, out: str, all_jobs: dict[str, Job]) -> dict[str, Any]:
    return execute(job, Path(out), all_jobs)


def _run_one_or_fail(job: Job, out: str, all_jobs: dict[str, Job]) -> dict[str, Any]:
    record = execute(job, Path(out), all_jobs)
    if record["status"] != "done":
        raise JobFailed(f"{job.folder}: {record.get('error')}")
    return record


# submitit parameters the runner sets for each job itself (the update would replace the spec's value)
RUNNER_SET = {
    "gpus_per_node": "from each job's gpus",
    "slurm_gpus_per_node": "from each job's gpus",
    "slurm_additional_parameters": "its dependencies and --kill-on-invalid-dep",
}
_EXPECTED = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _annotated(annotation: Any) -> type | None:
    """int, float, str or bool for an annotation of one of them (optional or not); None for anything else."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return args[0] if len(args) == 1 and args[0] in _EXPECTED else None


def slurm_parameters() -> dict[str, type | None]:
    """The parameters ``AutoExecutor(cluster="slurm").update_parameters`` takes -> their type (None: not
    checked): its generic ones, the Slurm executor's own, bare or ``slurm_``-prefixed."""
    from submitit import AutoExecutor
    from submitit.slurm import slurm

    params = inspect.signature(slurm._make_sbatch_string).parameters
    own = {
        name: _annotated(p.annotation)
        for name, p in params.items()
        if name in slurm._get_default_parameters()
    }
    return {**own, **{f"slurm_{k}": t for k, t in own.items()}, **AutoExecutor._typed_parameters()}


def _type_problem(value: Any, expected: type) -> bool:
    if expected is bool:
        return not isinstance(value, bool)
    if isinstance(value, bool):
        return True
    return not isinstance(value, {int: int, float: (int, float), str: (str, int, float)}[expected])


def slurm_problems(params: dict[str, Any]) -> list[str]:
    """One line per key of the spec's ``slurm`` mapping that submitit's Slurm executor does not take (or
    that the runner sets), or whose value is not of the parameter's type."""
    known = slurm_parameters()
    problems = []
    for key, value in params.items():
        if key in RUNNER_SET:
            problems.append(f"slurm.{key}: set by the study runner ({RUNNER_SET[key]}); remove it")
        elif key not in known:
            problems.append(f"slurm.{key}: not a parameter of submitit's Slurm executor")
        elif (expected := known[key]) is not None and value is not None and _type_problem(value, expected):
            problems.append(f"slurm.{key}: expected {_EXPECTED[expected]}, got {value!r}")
    return problems


def check_slurm() -> None:
    """``--executor slurm`` needs Slurm's commands: one line, before anything is submitted, where they lack."""
    missing = [
        f"`{name}`" for name in ("sbatch", "srun") if shutil.which(name) is None
    ]  # submitit needs both
    if missing:
        raise LongifyError(
            f"--executor slurm: no {' or '.join(missing)} on the PATH (Slurm's commands are needed to submit "
            "jobs); run where Slurm is installed, or use --executor local"
        )


def make_executor(folder: Path, params: dict[str, Any], local: bool = False) -> Any:
    import submitit

    if local:
        return submitit.LocalExecutor(folder=str(folder))
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(**params)
    return executor


def run_submitit(
    jobs: list[Job],
    out: Path,
    all_jobs: dict[str, Job],
    executor: Any,
    report: Report = progress_line,
    *,
    wait: bool = False,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, str]:
    """Submit pending jobs in dependency order; with a local executor each waits for the one before.
    Returns job id -> status (``submitted`` / ``running`` for jobs left in Slurm's queue without ``wait``)."""
    import submitit

    if isinstance(executor, submitit.LocalExecutor):
        return run_local(
            jobs,
            out,
            all_jobs,
            report,
            run=lambda job, o, a: executor.submit(_run_one, job, str(o), a).result(),
        )
    status: dict[str, str] = {}
    slurm_ids: dict[str, str] = {}
    for i, job in enumerate(jobs, 1):
        if (earlier := done_earlier(out, job)) is not None:
            status[job.id] = "done"
            report(i, len(jobs), job, earlier)
            continue
        current = job_status(out, job)
        if current in ("submitted", "running"):  # queued by an earlier `study run`: not submitted twice
            status[job.id] = current
            slurm_ids[job.id] = str((read_job(out, job) or {}).get("slurm_job_id"))
            report(i, len(jobs), job, {"status": f"{current} earlier (Slurm job {slurm_ids[job.id]})"})
            continue
        bad = [d for d in job.deps if status.get(d) in ("failed", "skipped")]
        if bad:
            status[job.id] = "skipped"
            report(i, len(jobs), job, skip(out, job, all_jobs[bad[0]]))
            continue
        waits = [slurm_ids[d] for d in job.deps if d in slurm_ids]
        slurm_ids[job.id] = _submit(job, out, all_jobs, executor, waits)
        status[job.id] = "submitted"
        report(i, len(jobs), job, {"status": f"submitted {slurm_ids[job.id]}"})
    if wait:
        follow(jobs, out, all_jobs, status, report, poll_seconds)
    return status


def _submit(job: Job, out: Path, all_jobs: dict[str, Job], executor: Any, waits: list[str]) -> str:
    """sbatch one job (after ``waits``), record it as submitted in its job.json; returns its Slurm id."""
    from submitit.core.utils import FailedJobError

    extra: dict[str, Any] = {"kill_on_invalid_dep": "yes"}
    if waits:
        extra["dependency"] = "afterok:" + ":".join(waits)
    executor.update_parameters(gpus_per_node=job.gpus or None, slurm_additional_parameters=extra)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr too: one line only
            submitted = executor.submit(_run_one_or_fail, job, str(out), all_jobs)
    except FailedJobError as err:
        raise LongifyError(f"slurm: sbatch refused {job.folder}: {first_line(str(err))}") from None
    job_dir(out, job).mkdir(parents=True, exist_ok=True)
    record = job_record(job, "submitted", slurm_job_id=str(submitted.job_id), submitted=now_iso())
    write_json_atomic(job_dir(out, job) / JOB_FILE, record)
    return str(submitted.job_id)


def follow(
    jobs: list[Job],
    out: Path,
    all_jobs: dict[str, Job],
    status: dict[str, str],
    report: Report,
    poll_seconds: float,
) -> None:
    """Until every queued job has ended: one progress line per job as it ends. A job Slurm removed because
    a job it needs failed (``kill-on-invalid-dep``) is recorded as skipped."""
    waiting = [j for j in jobs if status.get(j.id) in ("submitted", "running")]
    n = len(waiting)
    ended = 0
    while waiting:
        still = []
        for job in waiting:
            now = job_status(out, job)
            if now not in ENDED:
                still.append(job)
                continue
            record = read_job(out, job) or {}
            bad = [d for d in job.deps if status.get(d, job_status(out, all_jobs[d])) not in ("done",)]
            if now == "interrupted" and bad:
                now, record = "skipped", skip(out, job, all_jobs[bad[0]])
            status[job.id] = now
            ended += 1
            report(ended, n, job, {**record, "status": now})
        waiting = still
        if waiting:
            time.sleep(poll_seconds)
