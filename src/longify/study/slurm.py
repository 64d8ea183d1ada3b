"""``--executor slurm``: each pending job submitted through submitit, after the jobs it depends on
(Slurm ``afterok``); resources from the spec's ``slurm`` mapping (submitit's parameter names) and the job's
GPUs. A submitit ``LocalExecutor`` (same API, no cluster; tests) runs them one after another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longify.study.jobs import Job
from longify.study.runner import Report, done_earlier, execute, progress_line, skip


def _run_one(job: Job, out: str, all_jobs: dict[str, Job]) -> dict[str, Any]:
    return execute(job, Path(out), all_jobs)


def make_executor(folder: Path, params: dict[str, Any], local: bool = False) -> Any:
    import submitit

    if local:
        return submitit.LocalExecutor(folder=str(folder))
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(**params)
    return executor


def run_submitit(
    jobs: list[Job], out: Path, all_jobs: dict[str, Job], executor: Any, report: Report = progress_line
) -> dict[str, str]:
    """Submit pending jobs in dependency order; with a local executor each waits for the one before."""
    import submitit

    local = isinstance(executor, submitit.LocalExecutor)
    submitted: dict[str, Any] = {}
    status: dict[str, str] = {}
    for i, job in enumerate(jobs, 1):
        if (earlier := done_earlier(out, job)) is not None:
            status[job.id] = "done"
            report(i, len(jobs), job, earlier)
            continue
        bad = [d for d in job.deps if status.get(d) in ("failed", "skipped")]
        if bad:
            status[job.id] = "skipped"
            report(i, len(jobs), job, skip(out, job, all_jobs[bad[0]]))
            continue
        waits = [submitted[d].job_id for d in job.deps if d in submitted]
        if not local:
            extra = {"dependency": "afterok:" + ":".join(waits)} if waits else {}
            executor.update_parameters(gpus_per_node=job.gpus, slurm_additional_parameters=extra)
        submitted[job.id] = executor.submit(_run_one, job, str(out), all_jobs)
        if local:
            record = submitted[job.id].result()
            status[job.id] = record["status"]
            report(i, len(jobs), job, record)
        else:
            status[job.id] = "submitted"
            report(i, len(jobs), job, {"status": f"submitted {submitted[job.id].job_id}"})
    return status
