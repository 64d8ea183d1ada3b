"""A spec -> a DAG of jobs with content ids: prepare -> convert -> pretrain -> qa train -> qa evaluate.

A job's id hashes its stage, model, options, seed and the ids of the jobs it depends on (never the output
folder), so changing an option changes the id of that job and of everything after it, and an unchanged job
keeps its folder ``OUT/jobs/<stage>-<model>-[<eval set>-][s<seed>-]<id8>`` and is never redone. A convert
block's ``target: longformer`` is `longify convert`'s default: its job has the id it had without it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longify.study.flags import DEFAULT_TARGET, bool_argv
from longify.study.spec import ModelSpec, StudySpec, prepare_refs

STAGES = ("prepare", "convert", "pretrain", "train", "evaluate")
OUTPUT_NAME = {"prepare": "data", "convert": "model", "pretrain": "run", "train": "run", "evaluate": "run"}


@dataclass(frozen=True)
class Job:
    id: str
    stage: str
    model: str | None
    options: dict[str, Any]
    deps: tuple[str, ...] = ()
    seed: int | None = None
    eval_set: str | None = None
    task: str | None = None
    gpus: int = 1
    source_model: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # role -> id of the job whose output it is
    # the long target of the job's model (its nearest conversion in the study: ``Planner.target_of``); None
    # for a model no job of the study converted (not part of the id)
    target: str | None = None

    @property
    def folder(self) -> str:
        parts = [
            self.stage,
            self.model or "",
            self.eval_set or "",
            f"s{self.seed}" if self.seed is not None else "",
        ]
        name = "-".join(p for p in parts if p)
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{self.id[:8]}"

    def output(self, out: Path) -> Path:
        """The folder this job's command writes (its model, run or data)."""
        return out / "jobs" / self.folder / OUTPUT_NAME[self.stage]


def content_id(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _job(stage: str, model: str | None, options: dict[str, Any], deps: list[str], **kw: Any) -> Job:
    hashed = options
    if stage == "convert" and options.get("target") == DEFAULT_TARGET:  # the same command as without it
        hashed = {k: v for k, v in options.items() if k != "target"}
    content = {
        "stage": stage,
        "model": model,
        "options": hashed,
        "deps": sorted(set(deps)),
        "seed": kw.get("seed"),
        "eval_set": kw.get("eval_set"),
        "task": kw.get("task"),
    }
    return Job(content_id(content), stage, model, options, tuple(sorted(set(deps))), **kw)


class Planner:
    """Builds the jobs of a spec in dependency order (each job after the jobs it depends on)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self.jobs: dict[str, Job] = {}
        self.prepared: dict[str, str] = {}  # prepare name -> job id
        self.model_job: dict[str, str | None] = {}  # model -> id of the job producing it (None: as it is)

    def add(self, job: Job) -> Job:
        self.jobs.setdefault(job.id, job)
        return job

    def refs(self, value: Any) -> dict[str, str]:
        return {f"prepare:{name}": self.prepared[name] for name in prepare_refs(value)}

    def model(self, name: str) -> str | None:
        """The id of the job whose output is model ``name`` (None: its source is used as it is)."""
        if name in self.model_job:
            return self.model_job[name]
        m: ModelSpec = self.spec.models[name]
        source = self.spec.models[self._root(name)].source  # used when no job made the parent
        inputs = self.refs(source)
        if m.parent is not None:
            parent = self.model(m.parent)
            if parent is not None:
                inputs = {"source": parent}
        produced: str | None = inputs.get("source")
        base = {"source": None if "source" in inputs else source, "from": m.parent}
        if m.convert is not None:
            options = {**base, **m.convert}
            job = self.add(
                _job(
                    "convert",
                    name,
                    options,
                    list(inputs.values()),
                    gpus=0,  # CPU
                    inputs=inputs,
                    target=self.target_of(name),
                )
            )
            produced, inputs, base = job.id, {"source": job.id}, {}
        if m.pretrain is not None:
            inputs = {**inputs, **self.refs(m.pretrain)}
            job = self.add(
                _job(
                    "pretrain",
                    name,
                    {**base, **m.pretrain},
                    list(inputs.values()),
                    gpus=m.gpus,
                    inputs=inputs,
                    target=self.target_of(name),
                )
            )
            produced = job.id
        self.model_job[name] = produced
        return produced

    def plan(self) -> list[Job]:
        spec = self.spec
        for name, options in spec.prepare.items():
            self.prepared[name] = self.add(_job("prepare", name, options, [], gpus=0)).id  # CPU work
        for name in spec.models:
            self.model(name)
        for name, m in spec.models.items():
            made = self.model_job[name]
            source = {"source": made} if made else self.refs(spec.models[self._root(name)].source)
            for seed in spec.seeds:
                inputs = {**source, **self.refs(spec.finetune)}
                options = {**spec.finetune, "model": None if made else spec.models[self._root(name)].source}
                train = self.add(
                    _job(
                        "train",
                        name,
                        options,
                        list(inputs.values()),
                        seed=seed,
                        gpus=spec.finetune_gpus,
                        inputs=inputs,
                        source_model=self.short_source(name),
                        target=self.target_of(name),
                    )
                )
                for e in spec.evaluate.values():
                    inputs = {"source": train.id, **self.refs(e.options)}
                    self.add(
                        _job(
                            "evaluate",
                            name,
                            e.options,
                            list(inputs.values()),
                            seed=seed,
                            eval_set=e.name,
                            task=e.task,
                            gpus=spec.finetune_gpus,  # evaluation is sharded over them like training
                            inputs=inputs,
                            source_model=self.short_source(name),
                            target=self.target_of(name),
                        )
                    )
            del m
        return order(self.jobs)

    def _root(self, name: str) -> str:
        while self.spec.models[name].parent is not None:
            name = self.spec.models[name].parent  # type: ignore[assignment]
        return name

    def _nearest_conversion(self, name: str) -> ModelSpec | None:
        """The model of ``name``'s chain (itself, or the model it comes ``from``, ...) nearest to it that is
        converted in the study; None when none is."""
        m = self.spec.models[name]
        while m.convert is None:
            if m.parent is None:
                return None
            m = self.spec.models[m.parent]
        return m

    def target_of(self, name: str) -> str | None:
        """The target of the nearest conversion of ``name``; None when no model of its chain is converted."""
        m = self._nearest_conversion(name)
        return None if m is None else m.target

    def short_source(self, name: str) -> str | None:
        """The short model a long one was converted from: the ``from`` model of the nearest conversion."""
        m = self._nearest_conversion(name)
        return None if m is None else m.parent


def order(jobs: dict[str, Job]) -> list[Job]:
    """Jobs in a dependency order, stable by stage then folder name."""
    done: set[str] = set()
    out: list[Job] = []
    pending = sorted(jobs.values(), key=lambda j: (STAGES.index(j.stage), j.folder))
    while pending:
        ready = [j for j in pending if all(d in done for d in j.deps)]
        out.extend(ready)
        done.update(j.id for j in ready)
        pending = [j for j in pending if j.id not in done]
    return out


def plan_jobs(spec: StudySpec) -> list[Job]:
    return Planner(spec).plan()


def _flag_list(options: dict[str, Any], skip: tuple[str, ...] = (), stage: str | None = None) -> list[str]:
    """``options`` as flags; a bool of an HF-style command (``stage``) as its parser takes it (``bool_argv``),
    else (convert's and prepare's switches) the bare flag for true and nothing for false."""
    argv: list[str] = []
    for key, value in options.items():
        if key in skip or value is None:
            continue
        if isinstance(value, bool):
            if stage is not None:
                argv += bool_argv(stage, key, value)
            elif value:
                argv.append(f"--{key}")
            continue
        argv.append(f"--{key}")
        argv.extend(str(v) for v in value) if isinstance(value, list) else argv.append(str(value))
    return argv


def _fill(value: str, paths: dict[str, Path]) -> str:
    for ref, path in paths.items():
        value = value.replace("{" + ref + "}", str(path))
    return value


def _filled(job: Job, out: Path, jobs: dict[str, Job]) -> tuple[dict[str, Any], str]:
    """The job's options with ``{prepare:NAME}`` made paths, and the model (or data) it starts from."""
    paths = {role: jobs[i].output(out) for role, i in job.inputs.items()}
    options = {k: _fill(v, paths) if isinstance(v, str) else v for k, v in job.options.items()}
    return options, str(paths.get("source") or options.get("source") or options.get("model"))


def job_source(job: Job, out: Path, jobs: dict[str, Job]) -> str:
    """The model ``job`` starts from: a job's output folder, a folder or a hub id (as its command gets it)."""
    return _filled(job, out, jobs)[1]


def job_argv(job: Job, out: Path, jobs: dict[str, Job]) -> list[str]:
    """The exact command of ``job`` (``python -m longify.cli ...``, under torchrun for several GPUs)."""
    options, source = _filled(job, out, jobs)
    dest = str(job.output(out))
    if job.stage == "prepare":
        return [sys.executable, "-m", "longify.study.prepare", dest, *_flag_list(options)]
    if job.stage == "convert":
        flags = _flag_list({k.replace("_", "-"): v for k, v in options.items()}, ("source", "from"))
        args = ["convert", source, dest, *flags, "--overwrite"]
    elif job.stage == "pretrain":
        args = [
            "pretrain",
            "--model_name_or_path",
            source,
            "--output_dir",
            dest,
            "--do_train",
            *(["--do_eval"] if options.get("val_file_path") else []),
            *_flag_list(options, ("source", "from"), "pretrain"),
        ]
    elif job.stage == "train":
        args = [
            "qa",
            "train",
            "--model_name_or_path",
            source,
            "--output_dir",
            dest,
            "--seed",
            str(job.seed),
            "--do_train",
            *(["--do_eval"] if options.get("predict_file") else []),
            *_flag_list(options, ("model", "seed"), "train"),
        ]
    else:
        args = [
            "qa",
            "evaluate",
            "--model_name_or_path",
            source,
            "--dataset",
            str(job.task),
            "--output_dir",
            dest,
            "--seed",
            str(job.seed),
            "--do_eval",
            # the folder is this job's alone (its id hashes what defines the evaluation): a rerun of the job,
            # also from a moved study whose paths changed, replaces what an interrupted run wrote
            "--overwrite_output_dir",
            *_flag_list(options, ("seed",), "evaluate"),
        ]
    if job.gpus > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(job.gpus),
            "-m",
            "longify.cli",
            *args,
        ]
    return [sys.executable, "-m", "longify.cli", *args]
