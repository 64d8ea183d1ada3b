"""``longify qa train``'s arguments and inputs, checked before training: a malformed train file is one line
naming the file and the question; a ``--model_type`` other than the model's is one line; a config file
takes the seed's aliases and ``--concat_contexts``; ``-h`` says ``--preprocessing_num_workers`` is ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_squad_argv, tiny_qa_setup
from longify.cli import main as cli_main
from longify.errors import LongifyError
from longify.qa.args import parse_qa_args
from longify.qa.commands import qa_train_main
from longify.qa.pipeline import load_split


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_qa_setup(tmp_path_factory.mktemp("qa"), 64, 40, names=("train-v1.1", "dev-v1.1"))


def test_malformed_train_file_is_one_line_naming_file_and_question(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.json"
    data = json.loads(setup["train"].read_text())
    data["data"][3]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 0
    bad.write_text(json.dumps(data))
    argv = ["train", *run_squad_argv(setup, tmp_path / "out")]
    argv[argv.index("--train_file") + 1] = str(bad)
    assert cli_main(["qa", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "s1-3" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_model_type_mismatch_is_one_line(setup: dict[str, Path], tmp_path: Path) -> None:
    argv = run_squad_argv(setup, tmp_path / "out")
    argv[argv.index("--model_type") + 1] = "bert"
    with pytest.raises(LongifyError, match=r"--model_type bert: .* is a 'longformer' model") as err:
        qa_train_main(argv)
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_config_file_aliases_and_concat_contexts(setup: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "qa.yaml"
    config.write_text(
        f"model_name_or_path: {setup['model']}\nvalidation_file: {setup['dev']}\nconcat_contexts: 3\n"
    )
    args = parse_qa_args([str(config), "--output_dir", str(tmp_path / "o"), "--per_gpu_eval_batch_size", "3"])
    assert args.data.predict_file == str(setup["dev"]) and args.data.concat_contexts == 3
    assert args.training.per_device_eval_batch_size == 3 and "tensorboard" in args.training.report_to
    examples = load_split(args.data, args.data.predict_file, train=False, flag="--predict_file")
    assert len(examples) == 40
    plain = json.loads(setup["dev"].read_text())["data"][0]["paragraphs"][0]["context"]
    assert len(examples[0].context) > 2 * len(plain)
    for e in examples:
        assert e.context[e.answers[0].answer_start :].startswith(e.answers[0].text)
    assert parse_qa_args(["--concat-contexts", "2", "--output_dir", "x"]).data.concat_contexts == 2


def test_help_says_preprocessing_num_workers_is_ignored(capsys) -> None:
    assert cli_main(["qa", "train", "-h"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    start = help_text.index("--preprocessing_num_workers")
    described = help_text[start : start + 400]
    assert "Processes for tokenisation" not in described and "ignored" in described.lower()
