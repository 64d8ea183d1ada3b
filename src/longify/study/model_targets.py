"""The long target of each model of a study (``short`` for a model no conversion lengthened), for the
``target`` column of results.jsonl, and what each training run cost, for costs.jsonl.

A model converted in the study has the target of its nearest conversion (``Job.target``). Another one is
read from files: the conversion.json of the folder it starts from, else the config.json of the model its
fine-tuning wrote (a Longformer, a BigBird, or a full-attention class with more than 512 positions), else it
is ``short``. Targets are written only where the study names them: a convert block with ``target``, or a
conversion.json that records one; so a study from before targets keeps the results.jsonl it had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longify.artifacts import (
    CONVERSION_FILE,
    PRETRAIN_METRICS_FILE,
    RESULTS_FILE,
    RUN_COST_FIELDS,
    read_pretrain_metrics,
    read_qa_results,
    run_cost,
)
from longify.study.flags import DEFAULT_TARGET
from longify.study.jobs import Job, job_source
from longify.study.runner import job_status
from longify.textfiles import path_kind

SHORT = "short"
SHORT_POSITIONS = 514  # the largest position table of a released short checkpoint (RoBERTa: 512 + 2)
# model_type -> target: longify.targets.registry.BY_MODEL_TYPE (a test checks it), by name here so that the
# study's commands import no torch
CONFIG_TARGETS = {"longformer": "longformer", "big_bird": "bigbird"}


def _json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when there is none or it is not one (a target is then decided otherwise)."""
    if path_kind(path) != "file":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def config_target(config: dict[str, Any]) -> str:
    """The target a model's config.json shows: its long class, or ``full`` for a full-attention class with a
    position table longer than a short model's, else ``short``."""
    if str(config.get("model_type")) in CONFIG_TARGETS:
        return CONFIG_TARGETS[str(config["model_type"])]
    positions = config.get("max_position_embeddings")
    return "full" if isinstance(positions, int) and positions > SHORT_POSITIONS else SHORT


def _file_target(train: Job, out: Path, jobs: dict[str, Job]) -> tuple[str, bool]:
    """(target, named in a file) of a model no job of the study converted, from its fine-tuning job."""
    source = Path(job_source(train, out, jobs))
    conversion = _json(source / CONVERSION_FILE)
    if conversion is not None:  # a record from before targets is a Longformer's
        return str(conversion.get("target", DEFAULT_TARGET)), "target" in conversion
    config = _json(train.output(out) / "config.json") or _json(source / "config.json")
    return (SHORT if config is None else config_target(config)), False


def model_targets(jobs: list[Job], out: Path) -> dict[str, str] | None:
    """Model -> target for every model the study fine-tunes; None when the study names no target (its
    results.jsonl then has no ``target`` column, as before targets)."""
    by_id = {j.id: j for j in jobs}
    named = any(j.stage == "convert" and "target" in j.options for j in jobs)
    targets: dict[str, str] = {}
    for job in jobs:
        if job.stage != "train" or job.model is None or job.model in targets:
            continue
        if job.target is not None:
            targets[job.model] = job.target
            continue
        target, in_file = _file_target(job, out, by_id)
        targets[job.model] = target
        named = named or in_file
    return targets if named else None


def cost_rows(jobs: list[Job], out: Path) -> tuple[list[dict[str, Any]], bool]:
    """One row per done training job (pretrain, qa train): its ``cost``, nulls where its record has none;
    and whether any record had one."""
    rows, known = [], False
    for job in jobs:
        if job.stage not in ("pretrain", "train") or job_status(out, job) != "done":
            continue
        name = PRETRAIN_METRICS_FILE if job.stage == "pretrain" else RESULTS_FILE
        path = job.output(out) / name
        record: dict[str, Any] = {}
        if path_kind(path) is not None:
            read = read_pretrain_metrics if job.stage == "pretrain" else read_qa_results
            record = read(path, f"the output of job {job.folder}")
        cost = run_cost(path, record)
        known = known or cost is not None
        rows.append(
            {
                "model": job.model,
                "stage": job.stage,
                "seed": job.seed,
                "job_id": job.id,
                **(cost or dict.fromkeys(RUN_COST_FIELDS)),
            }
        )
    return rows, known
