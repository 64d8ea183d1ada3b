"""Runner overhead for a 500-job study: load + validate the spec, plan the DAG (content ids), and decide
for every job that it is done (job.json read), as ``longify study run`` does before running anything.

    .venv/bin/python benchmarks/bench_study_plan.py      # prints seconds; target < 1 s
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from longify.fileio import write_json_atomic
from longify.study.jobs import plan_jobs
from longify.study.runner import JOB_FILE, job_dir, job_record, job_status
from longify.study.spec import load_spec


def spec_text(out: Path, models: int = 10, sets: int = 12, seeds: int = 4) -> str:
    lines = [f"output_dir: {out}", f"seeds: {list(range(seeds))}", "models:"]
    for m in range(models):
        lines.append(f"  m{m}: {{source: src{m}}}" if m % 2 == 0 else
                     f"  m{m}: {{from: m{m - 1}, convert: {{max_pos: 4096}}, pretrain: {{max_steps: 10}}}}")  # fmt: skip
    lines.append("finetune: {train_file: train.json}")
    lines.append("evaluate:")
    lines += [f"  e{i}: {{task: squad, predict_file: dev{i}.json}}" for i in range(sets)]
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        spec = Path(tmp) / "study.yaml"
        spec.write_text(spec_text(out), encoding="utf-8")
        jobs = plan_jobs(load_spec(spec))
        for job in jobs:  # every job done: the rerun skips them all
            write_json_atomic(job_dir(out, job) / JOB_FILE, job_record(job, "done"))
        t0 = time.perf_counter()
        jobs = plan_jobs(load_spec(spec))
        done = sum(job_status(out, j) == "done" for j in jobs)
        seconds = time.perf_counter() - t0
    from longify.cpu import cpu_info  # imports torch: after the timing, which must not include it

    print(f"# {cpu_info().describe()}")
    print(
        f"{len(jobs)} jobs planned, {done} found done: {seconds:.3f} s ({1000 * seconds / len(jobs):.2f} ms/job)"
    )


if __name__ == "__main__":
    main()
