"""Flag values that make no run: one line naming the flag, exit 2, before any work."""

from __future__ import annotations

import pytest

from longify.cli import main

PRETRAIN = ["pretrain", "--model_name_or_path", "m", "--output_dir", "o", "--train_file_path", "t.raw",
            "--do_train", "--report_to", "none"]  # fmt: skip
QA = ["qa", "train", "--model_name_or_path", "m", "--output_dir", "o", "--train_file", "t.json", "--do_train",
      "--report_to", "none"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*PRETRAIN, "--learning_rate", "-1"], "--learning_rate: expected a positive number, got -1.0"),
        (
            [*PRETRAIN, "--per_device_train_batch_size", "0"],
            "--per_device_train_batch_size: expected a positive",
        ),
        ([*PRETRAIN, "--per_gpu_eval_batch_size", "0"], "--per_device_eval_batch_size: expected a positive"),
        (
            [*PRETRAIN, "--gradient_accumulation_steps", "0"],
            "--gradient_accumulation_steps: expected a positive",
        ),
        ([*PRETRAIN, "--max_steps", "0"], "--max_steps: expected a positive number of steps"),
        ([*PRETRAIN, "--max_eval_blocks", "0"], "--max_eval_blocks: expected a positive integer, got 0"),
        ([*PRETRAIN, "--block_size", "0"], "--block_size: expected a positive integer, got 0"),
        ([*PRETRAIN, "--do_lower_case"], "--do_lower_case: a `qa train` flag"),
        ([*PRETRAIN, "--model_type", "roberta"], "--model_type: a `qa train` flag"),
        ([*QA, "--num_train_epochs", "0"], "--num_train_epochs: expected a positive number, got 0.0"),
        ([*QA, "--learning_rate", "0"], "--learning_rate: expected a positive number, got 0.0"),
        ([*PRETRAIN, "--bf16_full_eval"], "--bf16_full_eval: longify does not cast the model for evaluation"),
        (
            [*QA, "--bf16_full_eval", "true"],
            "--bf16_full_eval: longify does not cast the model for evaluation",
        ),
        ([*QA, "--fp16_full_eval"], "--fp16_full_eval: longify does not cast the model for evaluation"),
    ],
)
def test_nonsense_values_are_one_line(argv, expected, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag", ["--n-best-size", "--max-answer-length", "--doc-stride", "--max-seq-length"])
def test_predict_positive_flags(flag, capsys) -> None:
    argv = ["qa", "predict", "--model", "m", "--question", "q", "--context", "c", flag, "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"argument {flag}" in err, err  # no usage block first


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["convert", "a", "b", "--position-init", "foo"], "argument --position-init"),
        (["convert", "a", "b", "--max-pos", "abc"], "argument --max-pos"),
        (["report"], "the following arguments are required"),
        (["data", "nosuch"], "unknown command 'nosuch'"),
    ],
)
def test_argparse_errors_are_one_line(argv, expected, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err and "-h)" in err, err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_convert_tolerance_checked_before_loading(value, tmp_path, capsys) -> None:
    # the source does not exist: the flag must be refused first, before any loading or conversion
    argv = ["convert", str(tmp_path / "missing-src"), str(tmp_path / "out"), "--tolerance", value]
    assert main(argv) == 2
    assert "--tolerance: expected a finite number >= 0" in capsys.readouterr().err


def test_block_size_above_max_pos_is_refused_at_parse_time(capsys) -> None:
    assert main([*PRETRAIN, "--max_pos", "128", "--block_size", "256"]) == 2
    assert "--block_size 256: larger than --max_pos 128" in capsys.readouterr().err


def test_block_size_above_a_longformers_positions_is_refused(tiny_sources, tmp_path, capsys) -> None:
    from longify.convert import convert

    long = tmp_path / "long"
    convert(str(tiny_sources["roberta"]), long, max_pos=128, attention_window=32)
    wiki = tmp_path / "wiki.raw"
    wiki.write_text(" = A = \n\n" + "word " * 400 + "\n", encoding="utf-8")
    argv = ["pretrain", "--model_name_or_path", str(long), "--output_dir", str(tmp_path / "o"),
            "--train_file_path", str(wiki), "--do_train", "--report_to", "none", "--block_size", "200"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--block_size 200: the model {long} takes at most 128 tokens" in err


def test_evaluate_without_questions_names_what_is_missing(tiny_sources, tmp_path, capsys) -> None:
    argv = [
        "qa",
        "evaluate",
        "--model_name_or_path",
        str(tiny_sources["roberta"]),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "--predict_file: required: the evaluation questions" in err and "--do_eval" not in err, err
