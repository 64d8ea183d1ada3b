"""A study's long targets: a model's ``convert`` block names its target (longformer, full or bigbird, with
BigBird's block sizes), its convert job passes them to `longify convert`, each job carries its model's target,
and results.jsonl gets a ``target`` column and costs.jsonl each training run's cost, only where the study
names targets and records costs (a study that does neither collects the bytes it always did)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO
from longify.artifacts import (
    PRETRAIN_METRICS_FILE,
    RESULT_KEYS,
    RESULTS_FILE,
    STUDY_COSTS_FILE,
    STUDY_RESULTS_FILE,
)
from longify.cli import main
from longify.fileio import write_json_atomic
from longify.study.jobs import Job, job_argv, plan_jobs
from longify.study.results import collect
from longify.study.runner import JOB_FILE, job_dir, job_record
from longify.study.spec import load_spec

SPEC = """\
output_dir: {out}
seeds: [1, 2]
models:
  short: {{source: {short}}}
  long:
    from: short
    convert: {{max_pos: 1024}}
    pretrain: {{train_file_path: wiki.train.raw, max_steps: 4}}
  full:
    from: short
    convert: {{target: full, max_pos: 1024}}
  bigbird:
    from: short
    convert: {{target: bigbird, max_pos: 1024, block_size: 64, num_random_blocks: 3}}
  bigbird-more:
    from: bigbird
    pretrain: {{train_file_path: wiki.train.raw, max_steps: 4}}
finetune: {{train_file: train.json, num_train_epochs: 1, gpus: 0}}
evaluate:
  dev: {{task: squad, predict_file: dev.json}}
"""


def write_spec(tmp_path: Path, text: str = SPEC, **replace: str) -> Path:
    text = text.format(out=tmp_path / "out", short=tmp_path / "short")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _train_targets(jobs: list[Job]) -> dict[str | None, str | None]:
    return {j.model: j.target for j in jobs if j.stage in ("train", "evaluate")}


def test_convert_blocks_take_the_targets_of_convert() -> None:
    from longify.study.flags import CONVERT_TARGETS, CONVERT_TYPES, DEFAULT_TARGET
    from longify.targets import DEFAULT_TARGET as CONVERT_DEFAULT
    from longify.targets import TARGET_NAMES

    assert CONVERT_TARGETS == TARGET_NAMES and DEFAULT_TARGET == CONVERT_DEFAULT
    assert CONVERT_TYPES["target"].choices == TARGET_NAMES


def test_each_model_carries_its_target_and_its_convert_job_passes_it(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path))
    assert {n: m.target for n, m in spec.models.items()} == {
        "short": None, "long": "longformer", "full": "full", "bigbird": "bigbird", "bigbird-more": None,
    }  # fmt: skip
    jobs = plan_jobs(spec)
    # a model `from` a converted one (pretrained further) has the target of that conversion
    assert _train_targets(jobs) == {
        "short": None, "long": "longformer", "full": "full", "bigbird": "bigbird", "bigbird-more": "bigbird",
    }  # fmt: skip
    parser = argparse.ArgumentParser()
    from longify.cli import _add_convert

    _add_convert(parser)
    by_id = {j.id: j for j in jobs}
    parsed = {
        j.model: parser.parse_args(job_argv(j, spec.output_dir, by_id)[4:])
        for j in jobs
        if j.stage == "convert"
    }
    assert (parsed["bigbird"].target, parsed["bigbird"].block_size, parsed["bigbird"].num_random_blocks) == (
        "bigbird",
        64,
        3,
    )
    assert parsed["full"].target == "full" and parsed["full"].block_size is None
    assert parsed["long"].target == "longformer"  # convert's default: no flag given


def test_target_longformer_is_the_default_and_keeps_the_job_ids(tmp_path: Path) -> None:
    plain = {j.folder for j in plan_jobs(load_spec(write_spec(tmp_path)))}
    named = write_spec(
        tmp_path, **{"convert: {max_pos: 1024}": "convert: {target: longformer, max_pos: 1024}"}
    )
    assert {j.folder for j in plan_jobs(load_spec(named))} == plain


@pytest.mark.parametrize(
    ("new", "line"),
    [
        ("convert: {target: performer, max_pos: 1024}",
         "models.long.convert.target: expected one of longformer, full, bigbird, got 'performer'"),
        ("convert: {target: bigbird, max_pos: 1024, block_size: 0}",
         "models.long.convert.block_size: expected a positive integer, got 0"),
        ("convert: {target: bigbird, max_pos: 1024, num_random_blocks: 1.5}",
         "models.long.convert.num_random_blocks: expected an integer, got 1.5"),
        ("convert: {target: full, max_pos: 1024, block_size: 64}",
         "models.long.convert.block_size: an option of target bigbird, not of target full; remove it"),
        ("convert: {max_pos: 1024, num_random_blocks: 3}",
         "models.long.convert.num_random_blocks: an option of target bigbird, not of target longformer; "
         "remove it"),
        ("convert: {target: bigbird, max_pos: 1024, attention_window: '512'}",
         "models.long.convert.attention_window: an option of target longformer, not of target bigbird; remove it"),
        ("convert: {target: full, max_pos: 1024, global_init: random}",
         "models.long.convert.global_init: an option of target longformer, not of target full; remove it"),
    ],
)  # fmt: skip
def test_a_bad_target_option_is_one_line_naming_the_spec_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], new: str, line: str
) -> None:
    spec = write_spec(tmp_path, **{"convert: {max_pos: 1024}": new})
    assert main(["study", "plan", str(spec)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"longify: error: {spec}: {line}"]


def test_global_init_copy_is_every_targets_default(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, **{"target: full, max_pos: 1024": "target: full, max_pos: 1024, global_init: copy"}
    )
    assert load_spec(spec).models["full"].target == "full"


def test_thesis_spec_has_every_target_for_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDY_DIR", raising=False)
    jobs = plan_jobs(load_spec(REPO / "configs" / "thesis.yaml", "out"))
    converted = {(j.options["from"], j.target) for j in jobs if j.stage == "convert"}
    assert converted == {
        (s, t) for s in ("roberta-base", "xlm-roberta-base") for t in ("longformer", "full", "bigbird")
    }
    pretrained = {j.target for j in jobs if j.stage == "pretrain"}
    assert pretrained == {"longformer", "full", "bigbird"}
    # the seed's Longformers keep their window and the job ids they had before targets
    assert {j.folder for j in jobs if j.stage == "convert" and j.target == "longformer"} == {
        "convert-roberta-base-4096-c26e8ed6",
        "convert-xlm-roberta-base-4096-2d004474",
    }


# ------------------------------------------------------------- collect: results.jsonl and costs.jsonl

COST = {"train_seconds": 7200.0, "steps": 100, "seconds_per_step": 72.0, "train_tokens": 409600,
        "train_tokens_per_second": 56.9, "peak_memory_mb": 2048.0, "memory": "cpu max rss",
        "device": "cpu-AVX2"}  # fmt: skip


def _done(out: Path, job: Job, files: dict[str, Any]) -> None:
    """Record ``job`` as done, with ``files`` (name -> JSON) in its output folder."""
    for name, data in files.items():
        write_json_atomic(job.output(out) / name, data)
    write_json_atomic(job_dir(out, job) / JOB_FILE, job_record(job, "done"))


def fake_run(tmp_path: Path, spec_path: Path, costs: bool) -> Path:
    """Every job of the spec done: evaluations scored, fine-tuned models with a config.json, and (with
    ``costs``) a cost in each training run's record."""
    spec = load_spec(spec_path)
    jobs = plan_jobs(spec)
    out = spec.output_dir
    scores = {"exact_match": 50.0, "f1": 60.0}
    for job in jobs:
        files: dict[str, Any] = {}
        if job.stage == "evaluate":
            files[RESULTS_FILE] = {"per_language": {"en": {**scores, "total": 4}}, "average": scores}
        elif job.stage == "train":
            files["config.json"] = {"model_type": "roberta", "max_position_embeddings": 514}
            files[RESULTS_FILE] = {"train": {}, **({"cost": COST} if costs else {})}
        elif job.stage == "pretrain":
            files[PRETRAIN_METRICS_FILE] = {"initial": None, "evals": [], "final": None,
                                            **({"cost": {"steps": 4}} if costs else {})}  # fmt: skip
        _done(out, job, files)
    collect(jobs, out)
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_study_naming_targets_collects_each_models_target_and_cost(tmp_path: Path) -> None:
    out = fake_run(tmp_path, write_spec(tmp_path), costs=True)
    rows = _rows(out / STUDY_RESULTS_FILE)
    assert all(list(r) == [*RESULT_KEYS, "target"] for r in rows)  # target last
    assert {r["model"]: r["target"] for r in rows} == {
        "short": "short", "long": "longformer", "full": "full", "bigbird": "bigbird", "bigbird-more": "bigbird",
    }  # fmt: skip
    costs = _rows(out / STUDY_COSTS_FILE)
    assert sorted((c["model"], c["stage"], c["seed"]) for c in costs) == sorted(
        [("long", "pretrain", None), ("bigbird-more", "pretrain", None)]
        + [(m, "train", s) for m in ("short", "long", "full", "bigbird", "bigbird-more") for s in (1, 2)]
    )
    train = next(c for c in costs if c["stage"] == "train")
    assert {k: train[k] for k in COST} == COST
    pretrain = next(c for c in costs if c["stage"] == "pretrain")
    assert pretrain["steps"] == 4 and pretrain["train_seconds"] is None  # a key the record lacks is null


def test_a_study_without_targets_or_costs_collects_what_it_always_did(tmp_path: Path) -> None:
    bigbird = "convert: {target: bigbird, max_pos: 1024, block_size: 64, num_random_blocks: 3}"
    full = "  full:\n    from: short\n    convert: {target: full, max_pos: 1024}\n"
    spec = write_spec(tmp_path, **{full: "", bigbird: "convert: {max_pos: 2048}"})
    out = fake_run(tmp_path, spec, costs=False)
    assert all(list(r) == list(RESULT_KEYS) for r in _rows(out / STUDY_RESULTS_FILE))
    assert not (out / STUDY_COSTS_FILE).exists()


HUB = "allenai/longformer-base-4096"


def test_a_model_not_converted_in_the_study_gets_its_target_from_its_files(tmp_path: Path) -> None:
    """conversion.json of the folder it starts from, else its fine-tuned config.json, else short."""
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / "conversion.json").write_text(json.dumps({"target": "full"}))
    spec = write_spec(
        tmp_path,
        **{"  long:\n": f"  external: {{source: {converted}}}\n  hub: {{source: {HUB}}}\n  long:\n"},
    )
    jobs = plan_jobs(load_spec(spec))
    out = fake_run(tmp_path, spec, costs=False)
    hub = next(j for j in jobs if j.stage == "train" and j.model == "hub")
    write_json_atomic(
        hub.output(out) / "config.json", {"model_type": "longformer", "max_position_embeddings": 4098}
    )
    collect(jobs, out)
    targets = {r["model"]: r["target"] for r in _rows(out / STUDY_RESULTS_FILE)}
    assert (targets["external"], targets["hub"], targets["short"]) == ("full", "longformer", "short")
