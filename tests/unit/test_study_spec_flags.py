"""A study spec's flag blocks (``pretrain``, ``finetune``, evaluation sets) hold only flags of the command
each becomes, checked when the spec is planned, not when the job runs after its dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO
from longify.cli import main
from longify.study.flags import COMMON, command_flags
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec

SHIPPED = sorted(
    [p for p in (REPO / "configs").glob("*.yaml") if p.read_text().startswith("# longify study")]
    + list((REPO / "src" / "longify" / "demo").glob("*.yaml"))
)


def spec_with(tmp_path: Path, pretrain: str = "", finetune: str = "", evaluate: str = "") -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"""
output_dir: {tmp_path / "out"}
models:
  short: {{source: roberta-base}}
  long:
    from: short
    convert: {{max_pos: 1024}}
    pretrain: {{train_file_path: wiki.train.raw, max_steps: 4{pretrain}}}
finetune: {{train_file: train.json, num_train_epochs: 1, gpus: 0{finetune}}}
evaluate:
  dev: {{task: squad, predict_file: dev.json{evaluate}}}
""",
        encoding="utf-8",
    )
    return path


def test_unknown_pretrain_key_is_refused_at_plan_time(tmp_path, capsys) -> None:
    """`study plan` said "10 jobs" and `study run` failed the pretrain job after its conversion ran."""
    spec = spec_with(tmp_path, pretrain=", bogus_flag: 3")
    assert main(["study", "plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"longify: error: {spec}: models.long.pretrain.bogus_flag: not a flag of longify pretrain"]
    assert main(["study", "run", str(spec)]) == 2
    assert "models.long.pretrain.bogus_flag" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any job ran


def test_unknown_finetune_and_evaluate_keys_are_one_line_each(tmp_path, capsys) -> None:
    spec = spec_with(tmp_path, finetune=", learnig_rate: 1.0e-3", evaluate=", max_seq_lenght: 128, gpus: 2")
    assert main(["study", "plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{spec}: finetune.learnig_rate: not a flag of longify qa train" in err
    assert f"{spec}: evaluate.dev.max_seq_lenght: not a flag of longify qa evaluate" in err
    assert f"{spec}: evaluate.dev.gpus: not a flag of longify qa evaluate" in err
    assert len(err.splitlines()) == 3, err


def test_a_seed_in_a_per_seed_block_is_refused_not_overridden(tmp_path, capsys) -> None:
    """A ``seed`` in a per-seed block (``finetune``, an evaluation set) is refused at plan time, one line each:
    each run's seed comes from the spec's ``seeds`` list."""
    spec = spec_with(tmp_path, pretrain=", seed: 7", finetune=", seed: 7", evaluate=", seed: 7")
    assert main(["study", "plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"longify: error: {spec}: finetune.seed: each run's seed comes from the spec's `seeds` list; remove it",
        f"{spec}: evaluate.dev.seed: each run's seed comes from the spec's `seeds` list; remove it",
    ], err  # the pretrain job runs once per model: its seed is its own


def test_a_flag_the_command_refuses_is_refused_with_its_reason(tmp_path, capsys) -> None:
    spec = spec_with(tmp_path, pretrain=", do_lower_case: true")
    assert main(["study", "plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models.long.pretrain.do_lower_case: a `qa train` flag" in err[0], err


def test_legacy_and_dataclass_flags_are_accepted(tmp_path) -> None:
    legacy = ", evaluate_during_training: true, per_gpu_train_batch_size: 2, logging_dir: tb, fp16: true"
    spec = spec_with(
        tmp_path,
        pretrain=f"{legacy}, mlm_probability: 0.2, no_copy_global_projections: true",
        finetune=", model_type: roberta, do_lower_case: true, per_gpu_train_batch_size: 4, validation_file: d.json",
        evaluate=", languages: [en, de], metric: mlqa, per_gpu_eval_batch_size: 8",
    )
    jobs = plan_jobs(load_spec(spec))
    assert sorted(j.stage for j in jobs) == ["convert", "evaluate", "evaluate", "pretrain", "train", "train"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_plans(path: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STUDY_DIR", str(tmp_path))
    assert plan_jobs(load_spec(path, tmp_path / "out"))


@pytest.mark.parametrize("stage", sorted(COMMON))
def test_common_flags_are_flags_of_the_command(stage: str) -> None:
    """The flags checked without building the parser are ones the command accepts."""
    assert COMMON[stage] <= command_flags(stage).accepted, COMMON[stage] - command_flags(stage).accepted
