"""``longify study plan | run | status``."""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections import Counter
from typing import Any

from longify.artifacts import PRETRAIN_CURVES_FILE, STUDY_RESULTS_FILE
from longify.errors import LongifyError, positive_int
from longify.locks import output_lock
from longify.study.jobs import Job, plan_jobs
from longify.study.results import collect
from longify.study.runner import execute, job_status, read_job, run_local, select
from longify.study.spec import StudySpec, load_spec
from longify.study.stopping import stop_on_signals


def add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="study spec (YAML)")
    p.add_argument("--json", action="store_true", help="the job table as JSON")
    p.add_argument("--output_dir", "--output-dir", default=None, help="instead of the spec's output_dir")


def add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="study spec (YAML)")
    p.add_argument("--output_dir", "--output-dir", default=None, help="instead of the spec's output_dir")


def add_run(p: argparse.ArgumentParser) -> None:
    add_status(p)
    p.add_argument("--only", default=None, help="glob over job folder, id or model (plus their dependencies)")
    p.add_argument("--executor", choices=("local", "slurm"), default="local", help="where jobs run")
    p.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        metavar="N",
        help="local executor: run up to N jobs side by side, each with its share of the CPU cores "
        "(OMP_NUM_THREADS = cores / N unless set); default 1",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="slurm: follow the submitted jobs until all have ended, then collect their results",
    )


def _load(args: argparse.Namespace) -> tuple[StudySpec, list[Job]]:
    spec = load_spec(args.spec, args.output_dir)
    return spec, plan_jobs(spec)


def job_rows(spec: StudySpec, jobs: list[Job]) -> list[dict[str, Any]]:
    by_id = {j.id: j for j in jobs}
    rows = []
    for job in jobs:
        record = read_job(spec.output_dir, job) or {}
        rows.append(
            {
                "id": job.id,
                "folder": job.folder,
                "stage": job.stage,
                "model": job.model,
                "target": job.target,
                "task": job.task,
                "eval_set": job.eval_set,
                "seed": job.seed,
                "gpus": job.gpus,
                "depends_on": [by_id[d].folder for d in job.deps],
                "status": job_status(spec.output_dir, job),
                "seconds": record.get("seconds"),
                "error": record.get("error"),
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'status':<12} {'stage':<9} {'model':<28} {'eval set':<10} {'seed':>5}  folder"]
    for r in rows:
        lines.append(
            f"{r['status']:<12} {r['stage']:<9} {r['model'] or '':<28} {r['eval_set'] or '':<10} "
            f"{'' if r['seed'] is None else r['seed']:>5}  {r['folder']}"
        )
    return "\n".join(lines)


def _estimate(rows: list[dict[str, Any]]) -> str:
    """Known seconds per stage (mean of done jobs) times the pending jobs of that stage."""
    done: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] == "done" and r["seconds"] is not None:
            done.setdefault(r["stage"], []).append(r["seconds"])
    todo = [r for r in rows if r["status"] != "done"]
    known = [sum(done[r["stage"]]) / len(done[r["stage"]]) for r in todo if r["stage"] in done]
    if not known:
        return ""
    return f"; about {sum(known) / 60:.1f} min left for {len(known)} of {len(todo)} jobs (timings known)"


def _counts(rows: list[dict[str, Any]]) -> str:
    counts = Counter(r["status"] for r in rows)
    return f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def run_plan(args: argparse.Namespace) -> int:
    spec, jobs = _load(args)
    rows = job_rows(spec, jobs)
    if args.json:
        print(json.dumps({"output_dir": str(spec.output_dir), "jobs": rows}, indent=1))
    else:
        print(_table(rows))
        print(_counts(rows) + _estimate(rows))
    return 0


def run_status(args: argparse.Namespace) -> int:
    spec, jobs = _load(args)
    rows = job_rows(spec, jobs)
    for r in rows:
        if r["status"] != "pending":
            extra = f": {r['error']}" if r["error"] and r["status"] == "failed" else ""
            print(f"{r['status']:<12} {r['folder']}{extra}")
    print(_counts(rows) + _estimate(rows))
    return 0


def run_study(args: argparse.Namespace) -> int:
    spec, jobs = _load(args)
    counts = execute_study(
        spec,
        jobs,
        only=args.only,
        executor=args.executor,
        wait=args.wait,
        submitit_local=getattr(args, "submitit_local", False),
        parallel=args.parallel,
    )
    return 1 if counts.get("failed") or counts.get("skipped") or counts.get("interrupted") else 0


def execute_study(
    spec: StudySpec,
    jobs: list[Job],
    *,
    only: str | None = None,
    executor: str = "local",
    wait: bool = False,
    submitit_local: bool = False,
    parallel: int = 1,
) -> Counter[str]:
    """Run the pending jobs (``only``: a glob, with their dependencies) under the study folder's lock, one
    progress line each; collect results.jsonl and pretrain_curves.jsonl; returns the count per final status."""
    out = spec.output_dir
    chosen = select(jobs, only)
    if not chosen:
        raise LongifyError(f"--only {only}: matches no job of {spec.path}")
    all_jobs = {j.id: j for j in jobs}
    if executor == "slurm" and parallel > 1:
        raise LongifyError(
            "--parallel: for the local executor; Slurm runs a study's jobs side by side itself"
        )
    if executor == "slurm" and not submitit_local:
        from longify.study.slurm import check_slurm

        check_slurm()  # before the study folder is made
    t0 = time.perf_counter()
    with output_lock(out):
        side = f", up to {parallel} at a time" if parallel > 1 else ""
        print(f"study {spec.path}: {len(chosen)} jobs in {out}{side}", flush=True)
        if executor == "slurm":
            from longify.study.slurm import make_executor, run_submitit

            engine = make_executor(out / "submitit", spec.slurm, local=submitit_local)
            status = run_submitit(chosen, out, all_jobs, engine, wait=wait)
        else:
            # SIGTERM / SIGINT: the running job is stopped and recorded as interrupted, Interrupted is raised
            with stop_on_signals():
                run = functools.partial(execute, parallel=parallel)
                status = run_local(chosen, out, all_jobs, run=run, parallel=parallel)
        collected = collect(jobs, out)
    counts = Counter(status.values())
    print(
        f"study: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))} in {time.perf_counter() - t0:.0f} s; "
        f"{collected.results} rows in {out / STUDY_RESULTS_FILE}, {collected.curves} in "
        f"{out / PRETRAIN_CURVES_FILE}",
        flush=True,
    )
    if collected.dropped_rows:
        print(
            f"study: {out / STUDY_RESULTS_FILE} no longer has {collected.dropped_rows} rows from "
            f"{collected.dropped_jobs} evaluation job(s) not in {spec.path} (an earlier run of another "
            f"spec into this folder); their folders stay in {out / 'jobs'}, and running that spec again "
            "collects them without redoing a job",
            flush=True,
        )
    if counts.get("submitted") or counts.get("running"):
        print(
            f"study: jobs are in Slurm's queue; `longify study status {spec.path}` follows them, and "
            "`study run` again (or with --wait) collects their results once they are done",
            flush=True,
        )
    return counts
