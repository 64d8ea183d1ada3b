"""The study spec: YAML -> a validated ``StudySpec``, every problem reported on its own line.

Shape (see configs/thesis.yaml)::

    output_dir: ${STUDY_DIR:-study-output}
    seeds: [42, 43, 44]
    prepare: {NAME: {kind: KIND, ...options}}   # optional; "{prepare:NAME}" is its folder; kinds: study.prepare
    models:
      NAME: {source: HUB_ID_OR_DIR | from: OTHER_MODEL, convert: {target: T, ...}, pretrain: {...flags}, gpus: N}
    finetune: {...qa train flags, gpus: N}
    evaluate: {SET: {task: TASK_NAME, ...qa evaluate flags}}

``${VAR}`` / ``${VAR:-default}`` come from the environment (an unset one without default is an error).
A key given twice in one mapping is refused (both lines named), and every value is typed against the flag
or option it feeds (``study.flags``, ``study.prepare``, ``study.slurm``), so that `study plan` finds what
would otherwise fail a job hours later, after the jobs it depends on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from longify.errors import LongifyError, first_line
from longify.seeds import EXPECTED, seed_ok
from longify.strictload import DuplicateKeys, load_yaml
from longify.study.flags import (
    CONVERT_TYPES,
    DEFAULT_TARGET,
    POSITIVE,
    TARGET_OPTIONS,
    flag_problems,
    value_problems,
)
from longify.study.prepare import kind_names, option_problems

TOP_KEYS = ("output_dir", "seeds", "prepare", "models", "finetune", "evaluate", "slurm")
MODEL_KEYS = ("source", "from", "convert", "pretrain", "gpus")
CONVERT_KEYS = tuple(CONVERT_TYPES)  # the flags of `longify convert`, `_` for `-`
# flags the runner sets itself (the job's own folder, the model of the previous stage, the study's seed)
RUNNER_FLAGS = ("output_dir", "model_name_or_path", "overwrite_output_dir", "do_train", "do_eval")
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_PREPARE_REF = re.compile(r"\{prepare:([\w.-]+)\}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str | None = None  # hub id or folder (may hold "{prepare:NAME}")
    parent: str | None = None  # ``from``: another model of the spec
    convert: dict[str, Any] | None = None
    pretrain: dict[str, Any] | None = None
    gpus: int = 1

    @property
    def target(self) -> str | None:
        """The long target its own ``convert`` block makes (longformer unless it names one); None without one."""
        return None if self.convert is None else str(self.convert.get("target", DEFAULT_TARGET))


@dataclass(frozen=True)
class EvalSpec:
    name: str
    task: str
    options: dict[str, Any]


@dataclass
class StudySpec:
    path: Path
    output_dir: Path
    seeds: list[int]
    models: dict[str, ModelSpec]
    finetune: dict[str, Any]
    evaluate: dict[str, EvalSpec]
    prepare: dict[str, dict[str, Any]] = field(default_factory=dict)
    finetune_gpus: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)


def expand(value: Any, where: str, problems: list[str]) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(f"{where.lstrip('.')}: uses ${{{name}}}, which is not set in the environment")
        return m.group(0)

    return _VAR.sub(sub, value)


def _unknown(data: dict[str, Any], allowed: tuple[str, ...], where: str, problems: list[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.append(f"{where}{key}: unknown key (expected one of {', '.join(allowed)})")


def _mapping(value: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
        return {}
    return value


def _flags(value: Any, where: str, problems: list[str], per_seed: bool = False) -> dict[str, Any]:
    """A block of command flags, less those the runner sets; ``per_seed``: a block of the jobs run once per
    seed of ``seeds`` (finetune, eval sets), where a ``seed`` key would be silently overridden."""
    flags = dict(_mapping(value, where, problems))
    for key in RUNNER_FLAGS:
        if key in flags:
            problems.append(
                f"{where}.{key}: set by the study runner (each job has its own folder and inputs)"
            )
            flags.pop(key)
    if per_seed and "seed" in flags:
        problems.append(f"{where}.seed: each run's seed comes from the spec's `seeds` list; remove it")
        flags.pop("seed")
    return flags


def _gpus(data: dict[str, Any], where: str, problems: list[str]) -> int:
    """GPUs per job: 0 asks for none (a CPU job: no GPU request to Slurm), N > 1 launches torchrun."""
    gpus = data.pop("gpus", 1)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        problems.append(f"{where}.gpus: expected a non-negative integer, got {gpus!r}")
        return 1
    return gpus


def _models(raw: dict[str, Any], problems: list[str]) -> dict[str, ModelSpec]:
    models = {}
    for name, m in raw.items():
        where = f"models.{name}"
        m = dict(_mapping(m, where, problems))
        _unknown(m, MODEL_KEYS, f"{where}.", problems)
        if ("source" in m) == ("from" in m):
            problems.append(f"{where}: give exactly one of source (hub id or folder) or from (another model)")
        convert = _mapping(m.get("convert"), f"{where}.convert", problems) if "convert" in m else None
        if convert:
            _unknown(convert, CONVERT_KEYS, f"{where}.convert.", problems)
            found = value_problems(convert, CONVERT_TYPES, f"{where}.convert")
            problems.extend(found or _convert_problems(convert, f"{where}.convert"))
        pretrain = _flags(m.get("pretrain"), f"{where}.pretrain", problems) if "pretrain" in m else None
        problems.extend(flag_problems(pretrain or {}, "pretrain", f"{where}.pretrain"))
        source = m.get("source")
        models[name] = ModelSpec(
            name,
            None if source is None else str(source),
            m.get("from"),
            dict(convert) if convert is not None else None,
            pretrain,
            _gpus(m, where, problems),
        )
    for model in models.values():
        if model.parent is not None and model.parent not in models:
            problems.append(f"models.{model.name}.from: {model.parent}: no such model in models")
    for name in _cycle(models):
        problems.append(f"models.{name}.from: dependency cycle ({' -> '.join(_chain(models, name))})")
    return models


def _convert_problems(convert: dict[str, Any], where: str) -> list[str]:
    """What `longify convert` would refuse in a well-typed ``convert`` block: a size below 1, an option of
    another target than the block's."""
    target = convert.get("target", DEFAULT_TARGET)
    problems = [
        f"{where}.{key}: expected a positive integer, got {convert[key]!r}"
        for key in POSITIVE
        if convert.get(key) is not None and int(convert[key]) < 1
    ]
    for key, owner in TARGET_OPTIONS.items():
        if (
            convert.get(key) is not None
            and owner != target
            and not (key == "global_init" and convert[key] == "copy")
        ):
            problems.append(f"{where}.{key}: an option of target {owner}, not of target {target}; remove it")
    return problems


def _chain(models: dict[str, ModelSpec], name: str) -> list[str]:
    seen = [name]
    while (parent := models[seen[-1]].parent) in models and parent not in seen:
        seen.append(parent)
    return [*seen, models[seen[-1]].parent or ""]


def _cycle(models: dict[str, ModelSpec]) -> list[str]:
    """The first model of each ``from`` cycle (as named in the spec)."""
    found, reported = [], set()
    for name in models:
        seen = [name]
        while (parent := models[seen[-1]].parent) in models:
            if parent in seen:
                cycle = frozenset(seen[seen.index(parent) :])
                if cycle not in reported:
                    reported.add(cycle)
                    found.append(parent)
                break
            seen.append(parent)
    return found


def _evaluate(raw: dict[str, Any], problems: list[str]) -> dict[str, EvalSpec]:
    from longify.qa.tasks import TASKS

    sets = {}
    for name, e in raw.items():
        where = f"evaluate.{name}"
        options = _flags(e, where, problems, per_seed=True)
        task = str(options.pop("task", name))
        problems.extend(flag_problems(options, "evaluate", where))
        if task not in TASKS:
            problems.append(f"{where}.task: unknown task {task!r} (expected one of {', '.join(TASKS)})")
        sets[name] = EvalSpec(name, task, options)
    return sets


def _prepare(raw: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, p in raw.items():
        p = dict(_mapping(p, f"prepare.{name}", problems))
        if p.get("kind") not in kind_names():  # the registered kinds (study.prepare)
            problems.append(
                f"prepare.{name}.kind: expected one of {', '.join(kind_names())}, got {p.get('kind')!r}"
            )
        else:
            problems.extend(option_problems(p, f"prepare.{name}"))
        out[name] = p
    return out


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set(_PREPARE_REF.findall(value)) if isinstance(value, str) else set()


def prepare_refs(value: Any) -> list[str]:
    """The ``{prepare:NAME}`` folders a value refers to, sorted."""
    return sorted(_refs(value))


def load_spec(path: str | Path, output_dir: str | Path | None = None) -> StudySpec:
    """Read and validate a spec; every problem found is one line of the ``LongifyError``."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))  # a JSON spec is YAML too
    except DuplicateKeys as err:
        raise LongifyError("\n".join(f"{path}: {p}" for p in err.problems)) from None
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise LongifyError(f"{path}: cannot read the study spec: {first_line(err)}") from None
    if not isinstance(raw, dict):
        raise LongifyError(f"{path}: expected a mapping (output_dir, seeds, models, finetune, evaluate)")
    problems: list[str] = []
    raw = expand(raw, "", problems)
    _unknown(raw, TOP_KEYS, "", problems)
    for key in ("models", "finetune", "evaluate"):
        if not raw.get(key):
            problems.append(f"{key}: missing (required)")
    seeds = _seeds(raw.get("seeds", [42]), problems)
    prepare = _prepare(_mapping(raw.get("prepare"), "prepare", problems), problems)
    models = _models(_mapping(raw.get("models"), "models", problems), problems)
    finetune = _flags(raw.get("finetune"), "finetune", problems, per_seed=True)
    finetune_gpus = _gpus(finetune, "finetune", problems)
    problems.extend(flag_problems(finetune, "train", "finetune"))
    evaluate = _evaluate(_mapping(raw.get("evaluate"), "evaluate", problems), problems)
    used = prepare_refs([raw.get("models"), raw.get("finetune"), raw.get("evaluate")])
    for name in used:
        if name not in prepare:
            problems.append(f"{{prepare:{name}}}: no such entry in prepare")
    out = output_dir or raw.get("output_dir")
    if not out:
        problems.append("output_dir: missing (in the spec or --output_dir)")
    slurm = _mapping(raw.get("slurm"), "slurm", problems)
    if slurm:
        from longify.study.slurm import slurm_problems  # imports submitit: only for a spec that has slurm

        problems.extend(slurm_problems(slurm))
    if problems:
        raise LongifyError("\n".join(f"{path}: {p}" for p in problems))
    return StudySpec(
        path=path,
        output_dir=Path(str(out)).absolute(),  # paths in results.jsonl must not depend on the cwd
        seeds=list(dict.fromkeys(seeds)),
        models=models,
        finetune=finetune,
        evaluate=evaluate,
        prepare=prepare,
        finetune_gpus=finetune_gpus,
        slurm=slurm,
    )


def _seeds(seeds: Any, problems: list[str]) -> list[int]:
    """The spec's ``seeds``: a non-empty list of distinct integers (not booleans) in numpy's seed range."""
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        problems.append(f"seeds: expected a list of integers, got {seeds!r}")
        return [42]
    for i, seed in enumerate(seeds):
        if not seed_ok(seed):
            problems.append(f"seeds[{i}]: {EXPECTED}, got {seed}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        problems.append(f"seeds: {', '.join(map(str, repeated))} listed twice (each seed is one run)")
    return seeds
