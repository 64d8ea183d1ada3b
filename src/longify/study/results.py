"""Collect done jobs into ``OUT/results.jsonl`` (one row per model x eval set x language x seed, plus the
benchmark's headline ``average``; with each model's ``target`` where the study names targets),
``OUT/pretrain_curves.jsonl`` (one row per evaluation of each pretraining run) and ``OUT/costs.jsonl`` (one
row per training run, once any run recorded its cost). Rows are sorted, so an interrupted-and-resumed study
writes the same files, and a file whose rows are already there is left as it is: a rerun of a finished study
changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from longify.artifacts import (
    AVERAGE,
    PREDICTIONS_FILE,
    PRETRAIN_CURVES_FILE,
    PRETRAIN_METRICS_FILE,
    QUESTION_SCORES_FILE,
    RESULTS_FILE,
    STUDY_COSTS_FILE,
    STUDY_RESULTS_FILE,
    read_pretrain_metrics,
    read_qa_results,
    write_pretrain_curves,
    write_study_costs,
    write_study_results,
)
from longify.study.jobs import Job
from longify.study.model_targets import cost_rows, model_targets
from longify.study.runner import job_status
from longify.textfiles import path_kind


def result_rows(job: Job, run: Path, out: Path, target: str | None = None) -> list[dict[str, Any]]:
    """The rows of one evaluation job (with ``target``, its model's, where given); its file paths are
    relative to the study folder ``out``, so that a copied or moved study reads its own files, never the
    original's."""
    results = read_qa_results(run / RESULTS_FILE, f"the output of job {job.folder}", scored=True)
    where = run.relative_to(out)
    base = {"model": job.model, "source_model": job.source_model, "eval_set": job.eval_set, "task": job.task}
    paths = {
        "job_id": job.id,
        "results_path": str(where / RESULTS_FILE),
        "predictions_path": str(where / PREDICTIONS_FILE),
        "question_scores_path": str(where / QUESTION_SCORES_FILE),
        **({} if target is None else {"target": target}),
    }
    rows = []
    per_language = results["per_language"]
    for lang, s in per_language.items():
        rows.append(
            {
                **base,
                "language": lang,
                "seed": job.seed,
                "exact_match": s["exact_match"],
                "f1": s["f1"],
                "total": s["total"],
                **paths,
            }
        )
    averaged = results.get("average_languages") or list(per_language)
    total = sum(per_language[lang]["total"] for lang in averaged if lang in per_language)
    avg = results["average"]
    rows.append(
        {
            **base,
            "language": AVERAGE,
            "seed": job.seed,
            "exact_match": avg["exact_match"],
            "f1": avg["f1"],
            "total": total,
            **paths,
        }
    )
    return rows


def curve_rows(job: Job, run: Path) -> list[dict[str, Any]]:
    metrics = read_pretrain_metrics(run / PRETRAIN_METRICS_FILE, f"the output of job {job.folder}")
    entries = [e for e in [metrics.get("initial"), *metrics.get("evals", [])] if e]
    return [
        {
            "model": job.model,
            "step": e["step"],
            "loss": e.get("loss"),
            "bits_per_token": e.get("bits_per_token"),
            "pseudo_bits_per_char": e.get("pseudo_bits_per_char"),
            "job_id": job.id,
        }
        for e in sorted(entries, key=lambda e: e["step"])
    ]


class Collected(NamedTuple):
    results: int  # rows written to results.jsonl
    curves: int  # rows written to pretrain_curves.jsonl
    dropped_rows: int  # rows the previous results.jsonl had of jobs not in this spec
    dropped_jobs: int  # those jobs


def _rows_of_other_jobs(path: Path, ids: set[str]) -> tuple[int, int]:
    """(rows, jobs) of ``path`` (the current results.jsonl, if any) whose job is not among ``ids``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, 0
    other: list[str] = []
    for line in lines:
        try:
            job_id = json.loads(line).get("job_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(job_id, str) and job_id not in ids:
            other.append(job_id)
    return len(other), len(set(other))


def collect(jobs: list[Job], out: Path) -> Collected:
    """Write both files from the done jobs of this spec; also counts what the previous results.jsonl had of
    jobs not in it (an earlier run of another spec into the same folder: its job folders stay)."""
    dropped = _rows_of_other_jobs(out / STUDY_RESULTS_FILE, {j.id for j in jobs})
    targets = model_targets(jobs, out)
    results: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for job in jobs:
        if job.stage not in ("evaluate", "pretrain") or job_status(out, job) != "done":
            continue
        run = job.output(out)
        if job.stage == "evaluate":
            results.extend(result_rows(job, run, out, None if targets is None else targets[str(job.model)]))
        elif (run / PRETRAIN_METRICS_FILE).is_file():
            curves.extend(curve_rows(job, run))
    results.sort(
        key=lambda r: (r["model"], r["eval_set"], r["seed"], r["language"] == AVERAGE, r["language"])
    )
    curves.sort(key=lambda r: (r["model"], r["step"]))
    out.mkdir(parents=True, exist_ok=True)
    write_study_results(out / STUDY_RESULTS_FILE, results)
    write_pretrain_curves(out / PRETRAIN_CURVES_FILE, curves)
    costs, known = cost_rows(jobs, out)
    if known or path_kind(out / STUDY_COSTS_FILE) is not None:  # none before costs were recorded
        costs.sort(key=lambda r: (r["model"], r["stage"] != "pretrain", r["seed"] or 0, r["job_id"]))
        write_study_costs(out / STUDY_COSTS_FILE, costs)
    return Collected(len(results), len(curves), *dropped)
