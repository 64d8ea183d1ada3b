"""A study spec is checked whole when it is planned: duplicate keys, the type of every value (against the
flag or option it feeds), the seeds' range and the ``slurm`` mapping; the same seed range holds for the
commands' ``--seed``. Each is refused by `study plan`, before any job runs, not by a job hours later."""

from __future__ import annotations

from pathlib import Path

import pytest

from longify.cli import main

SPEC = """\
output_dir: {out}
seeds: [1, 2]
prepare:
  data: {{kind: demo-data, n_train: 8}}
models:
  short: {{source: roberta-base}}
  long:
    from: short
    convert: {{max_pos: 1024}}
    pretrain: {{train_file_path: "{{prepare:data}}/wiki.train.raw", max_steps: 4}}
finetune: {{train_file: train.json, num_train_epochs: 1, gpus: 0}}
evaluate:
  dev: {{task: squad, predict_file: dev.json}}
"""


def write_spec(tmp_path: Path, text: str = SPEC, **replace: str) -> Path:
    text = text.format(out=tmp_path / "out")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def plan_errors(spec: Path, capsys) -> list[str]:
    """`study plan SPEC` exits 2 and writes nothing; its error lines without the `longify: error:` prefix."""
    assert main(["study", "plan", str(spec)]) == 2
    assert not (spec.parent / "out").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    lines[0] = lines[0].removeprefix("longify: error: ")
    return [line.removeprefix(f"{spec}: ") for line in lines]


def test_the_base_spec_plans(tmp_path, capsys) -> None:
    assert main(["study", "plan", str(write_spec(tmp_path))]) == 0
    assert "11 jobs" in capsys.readouterr().out


def test_a_key_given_twice_names_both_lines(tmp_path, capsys) -> None:
    """A key given twice (`seeds`, a model) is refused, naming both lines; YAML alone would keep the last."""
    spec = write_spec(
        tmp_path,
        SPEC + "seeds: [1, 2, 3]\n",
        **{
            "  short: {source: roberta-base}\n": "  short: {source: roberta-base}\n  short: {source: bert-base}\n"
        },
    )
    assert plan_errors(spec, capsys) == [
        "models.short: given twice (lines 6 and 7); each key may appear once",
        "seeds: given twice (lines 2 and 15); each key may appear once",
    ]


def test_a_nested_duplicate_is_refused_but_a_merge_key_override_is_not(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, **{"max_steps: 4}": "max_steps: 4, max_steps: 8}"})
    assert plan_errors(spec, capsys) == [
        "models.long.pretrain.max_steps: given twice on line 10; each key may appear once"
    ]
    merged = SPEC.replace("finetune: {{", "base: &base {{x: 1}}\nfinetune: {{").replace(
        "num_train_epochs: 1,", "num_train_epochs: 1, <<: *base, x: 2,"
    )
    assert "unknown key" in plan_errors(write_spec(tmp_path, merged), capsys)[0]  # `base`, not a duplicate


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("max_pos: 1024", 'max_pos: "big"', "models.long.convert.max_pos: expected an integer, got 'big'"),
        ("max_pos: 1024", "max_pos: 1024, tolerance: tiny", "models.long.convert.tolerance: expected a number, got 'tiny'"),
        ("max_pos: 1024", "max_pos: 1024, position_init: spline", "models.long.convert.position_init: expected one of copy, interpolate, random, got 'spline'"),
        ("max_pos: 1024", "max_pos: 1024, no_verify: maybe", "models.long.convert.no_verify: expected true or false, got 'maybe'"),
        ("num_train_epochs: 1", "num_train_epochs: 1, do_lower_case: 'true'", "finetune.do_lower_case: expected true or false, not a string (quoted, or made by ${VAR}: the flag takes no value), got 'true'"),
        ("max_pos: 1024", "max_pos: 1024, attention_window: [256, 512]", "models.long.convert.attention_window: expected a single value, got [256, 512]"),
        ("max_steps: 4", "max_steps: four", "models.long.pretrain.max_steps: expected an integer, got 'four'"),
        ("max_steps: 4", "max_steps: true", "models.long.pretrain.max_steps: expected an integer, got True"),
        ("max_steps: 4", "max_steps: 4, fp16: maybe", "models.long.pretrain.fp16: expected true or false, got 'maybe'"),
        ("max_steps: 4", "max_steps: 4, eval_strategy: often", "models.long.pretrain.eval_strategy: expected one of no, steps, epoch, got 'often'"),
        ("num_train_epochs: 1", "num_train_epochs: one", "finetune.num_train_epochs: expected a number, got 'one'"),
        ("num_train_epochs: 1", "num_train_epochs: 1, per_gpu_train_batch_size: 1.5", "finetune.per_gpu_train_batch_size: expected an integer, got 1.5"),
        ("predict_file: dev.json", "predict_file: dev.json, max_seq_length: {a: 1}", "evaluate.dev.max_seq_length: expected an integer, got {'a': 1}"),
        ("predict_file: dev.json", "predict_file: dev.json, languages: []", "evaluate.dev.languages: expected at least one value, got []"),
        ("predict_file: dev.json", "predict_file: [a.json, b.json]", "evaluate.dev.predict_file: expected a single value, got ['a.json', 'b.json']"),
        ("seeds: [1, 2]", "seeds: [true]", "seeds: expected a list of integers, got [True]"),
        ("seeds: [1, 2]", "seeds: [1, -1]", "seeds[1]: expected an integer from 0 to 4294967295 (numpy's seed range), got -1"),
        ("seeds: [1, 2]", "seeds: [4294967296]", "seeds[0]: expected an integer from 0 to 4294967295 (numpy's seed range), got 4294967296"),
        ("max_steps: 4", "max_steps: 4, seed: -3", "models.long.pretrain.seed: expected an integer from 0 to 4294967295 (numpy's seed range), got -3"),
        ("max_pos: 1024", "max_pos: 1024, seed: 4294967296", "models.long.convert.seed: expected an integer from 0 to 4294967295 (numpy's seed range), got 4294967296"),
        ("n_train: 8", "n_trian: 8", "prepare.data.n_trian: not an option of kind demo-data (expected one of n_train, n_dev, articles, filler)"),
        ("n_train: 8", "n_train: many", "prepare.data.n_train: expected a positive integer, got 'many'"),
        ("n_train: 8", "n_train: 8, steps: 10", "prepare.data.steps: not an option of kind demo-data (expected one of n_train, n_dev, articles, filler)"),
        ("gpus: 0}", "gpus: 0}\nslurm: 5", "slurm: expected a mapping, got int"),
        ("gpus: 0}", "gpus: 0}\nslurm: {partiton: gpu}", "slurm.partiton: not a parameter of submitit's Slurm executor"),
        ("gpus: 0}", "gpus: 0}\nslurm: {timeout_min: soon}", "slurm.timeout_min: expected an integer, got 'soon'"),
        ("gpus: 0}", "gpus: 0}\nslurm: {gpus_per_node: 2}", "slurm.gpus_per_node: set by the study runner (from each job's gpus); remove it"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_its_path(tmp_path, capsys, old: str, new: str, line: str) -> None:
    assert plan_errors(write_spec(tmp_path, **{old: new}), capsys) == [line]


def test_good_values_of_every_kind_plan(tmp_path, capsys) -> None:
    spec = write_spec(
        tmp_path,
        **{
            "max_pos: 1024": 'max_pos: "1024", position_init: interpolate, no_verify: true, tolerance: 1e-3, seed: 0',
            "max_steps: 4": "max_steps: 4, fp16: true, bf16: 'no', learning_rate: 5e-5, seed: 4294967295",
            "n_train: 8": "n_train: 8, filler: 0",
            "predict_file: dev.json": "predict_file: dev.json, languages: [en, de], max_seq_length: 512",
            "gpus: 0}": "gpus: 0}\nslurm: {partition: gpu, timeout_min: 60, mem_gb: 16.5, slurm_account: me}",
        },
    )
    assert main(["study", "plan", str(spec)]) == 0, capsys.readouterr().err


def _seed_argv(command: list[str], tmp_path: Path, seed: str) -> list[str]:
    common = ["--output_dir", str(tmp_path / "run"), "--seed", seed]
    if command == ["pretrain"]:
        return [*command, "--model_name_or_path", "x", "--train_file_path", "t.raw", *common]
    return [
        *command,
        "--model_name_or_path",
        "x",
        "--predict_file",
        "d.json",
        "--train_file",
        "t.json",
        *common,
    ]


@pytest.mark.parametrize("command", [["pretrain"], ["qa", "train"], ["qa", "evaluate"]], ids=" ".join)
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_seed_flag_out_of_numpy_range_is_one_line(tmp_path, capsys, command: list[str], seed: str) -> None:
    assert main(_seed_argv(command, tmp_path, seed)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"longify: error: --seed: expected an integer from 0 to 4294967295 (numpy's seed range), got {seed}"
    ]
    assert not (tmp_path / "run").exists()


def test_convert_seed_out_of_range_is_one_line(tmp_path, capsys) -> None:
    assert main(["convert", "roberta-base", str(tmp_path / "long"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "longify: error: --seed: expected an integer from 0 to 4294967295 (numpy's seed range), got -1"
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_command_config_with_a_key_twice_is_refused(tmp_path, capsys, suffix: str) -> None:
    config = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        config.write_text("model_name_or_path: x\ntrain_file_path: t.raw\nmax_steps: 4\nmax_steps: 8\n")
        where = "max_steps: given twice (lines 3 and 4); each key may appear once"
    else:
        config.write_text(
            '{"model_name_or_path": "x", "train_file_path": "t.raw", "max_steps": 4, "max_steps": 8}'
        )
        where = "max_steps: given twice; each key may appear once"
    assert main(["pretrain", str(config), "--output_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"longify: error: {config}: {where}"]


def test_slurm_executor_without_sbatch_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    spec = write_spec(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["study", "run", str(spec), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "longify: error: --executor slurm: no `sbatch` or `srun` on the PATH (Slurm's commands are needed to submit "
        "jobs); run where Slurm is installed, or use --executor local"
    ]
    assert not (tmp_path / "out").exists()  # nothing submitted, no study folder made


@pytest.mark.parametrize("stage", ["pretrain", "train", "evaluate"])
def test_common_flag_types_are_the_parsers(stage: str) -> None:
    """The types checked without building a parser are the ones the command's parser gives."""
    from longify.study.flags import COMMON_TYPES, command_flags

    parsed = command_flags(stage).types
    wrong = {k: (t, parsed.get(k)) for k, t in COMMON_TYPES[stage].items() if parsed.get(k) != t}
    assert not wrong, wrong


def test_convert_block_types_are_the_convert_parsers() -> None:
    import argparse

    from longify.cli import _add_convert
    from longify.study.flags import CONVERT_TYPES, action_types

    parser = argparse.ArgumentParser()
    _add_convert(parser)
    parsed = action_types(parser)
    # --target is checked by longify.targets.get_target, not argparse: its choices are TARGET_NAMES
    # (tests/unit/test_study_targets.py)
    typed = {k: v for k, v in CONVERT_TYPES.items() if k != "target"}
    assert {k: parsed[k.replace("_", "-")] for k in typed} == typed


def test_a_json_spec_with_a_key_twice_names_both_lines(tmp_path, capsys) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        '{\n "output_dir": "out",\n "seeds": [1],\n "seeds": [1, 2, 3],\n'
        ' "models": {"m": {"source": "roberta-base"}},\n "finetune": {"train_file": "t.json"},\n'
        ' "evaluate": {"dev": {"task": "squad"}}\n}\n'
    )
    assert main(["study", "plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"longify: error: {spec}: seeds: given twice (lines 3 and 4); each key may appear once"]


def test_bools_reach_the_command_as_the_spec_says(tmp_path) -> None:
    """`false` for a flag whose default is true reaches the job's command as false (the default never stands in
    for it), and `true` for a ``bool | None`` flag as a value its parser takes."""
    from longify.mlm.args import pretrain_parser
    from longify.study.jobs import job_argv, plan_jobs
    from longify.study.spec import load_spec

    spec = write_spec(
        tmp_path,
        **{"max_steps: 4": "max_steps: 4, copy_global_projections: false, disable_tqdm: true, fp16: false"},
    )
    jobs = {j.id: j for j in plan_jobs(load_spec(spec))}
    pretrain = next(j for j in jobs.values() if j.stage == "pretrain")
    argv = job_argv(pretrain, tmp_path / "out", jobs)
    args = argv[argv.index("pretrain") + 1 :]
    model, _, training = pretrain_parser().parse_args_into_dataclasses(args, look_for_args_file=False)
    assert model.copy_global_projections is False
    assert training.disable_tqdm is True
    assert training.fp16 is False


def test_a_number_from_an_environment_variable_plans(tmp_path, capsys, monkeypatch) -> None:
    """``${VAR}`` expands to a string: ``n_train: ${N_TRAIN}`` is ``--n_train 8`` to the prepare command, which
    takes it, as the flag blocks take ``max_steps: ${STEPS}``."""
    monkeypatch.setenv("N_TRAIN", "8")
    spec = write_spec(
        tmp_path,
        **{
            "data: {kind: demo-data, n_train: 8}": "data:\n    kind: demo-data\n    n_train: ${N_TRAIN}\n    n_dev: ${N_DEV:-4}"
        },
    )
    assert main(["study", "plan", str(spec)]) == 0, capsys.readouterr().err
    monkeypatch.setenv("N_TRAIN", "0")
    assert plan_errors(spec, capsys) == ["prepare.data.n_train: expected a positive integer, got '0'"]


def test_a_strategy_of_unquoted_no_reaches_the_command_as_no(tmp_path, capsys) -> None:
    """YAML reads an unquoted ``no`` as false; for a choice flag such as ``save_strategy`` it reaches the
    command as the choice ``no``."""
    from longify.qa.args import qa_parser
    from longify.study.jobs import job_argv, plan_jobs
    from longify.study.spec import load_spec

    spec = write_spec(
        tmp_path, **{"num_train_epochs: 1,": "num_train_epochs: 1, save_strategy: no, eval_strategy: off,"}
    )
    assert main(["study", "plan", str(spec)]) == 0, capsys.readouterr().err
    jobs = {j.id: j for j in plan_jobs(load_spec(spec))}
    train = next(j for j in jobs.values() if j.stage == "train")
    argv = job_argv(train, tmp_path / "out", jobs)
    assert argv[argv.index("--save_strategy") + 1] == "no" and argv[argv.index("--eval_strategy") + 1] == "no"
    args = argv[argv.index("train") + 1 :]
    training = qa_parser().parse_args_into_dataclasses(args, look_for_args_file=False)[-1]
    assert str(training.save_strategy.value) == "no"
    spec = write_spec(tmp_path, **{"num_train_epochs: 1,": "num_train_epochs: 1, save_strategy: yes,"})
    assert plan_errors(spec, capsys) == [
        "finetune.save_strategy: expected one of no, steps, epoch, best, got True"
    ]
