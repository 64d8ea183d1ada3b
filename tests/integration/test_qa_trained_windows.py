"""The windows a QA model was trained with travel with it: ``qa predict`` answers as ``qa evaluate`` does with
the trained ``--max_seq_length`` / ``--doc_stride`` (flags given still win) and refuses the windows evaluate
refuses; a refused rerun of ``qa train`` names the ``--max_seq_length`` that was used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import eval_argv
from longify.cli import main
from longify.errors import LongifyError
from longify.qa.commands import qa_evaluate_main, qa_predict_main


def one_question_file(s: dict[str, Path], path: Path) -> tuple[Path, str, str]:
    data = json.loads(s["dev"].read_text())
    data["data"] = data["data"][:1]
    path.write_text(json.dumps(data))
    paragraph = data["data"][0]["paragraphs"][0]
    return path, paragraph["qas"][0]["question"], paragraph["context"]


# --- 1. qa predict answers as qa evaluate does ---------------------------------------------------------------


def test_predict_answers_like_evaluate_with_the_trained_windows(qa, tmp_path, caplog, capsys) -> None:
    from longify.qa.predict import predict

    out = tmp_path / "eval"
    assert qa_evaluate_main(eval_argv(qa["trained"], qa["long"], out)) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["max_seq_length"] == 64 and result["windows"] > 2 * result["total"]
    predictions = json.loads((out / "predictions.json").read_text())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="longify"):
        answers = {}
        for article in json.loads(qa["long"].read_text())["data"]:
            paragraph = article["paragraphs"][0]
            for q in paragraph["qas"]:
                answers[q["id"]] = predict(str(qa["trained"]), q["question"], paragraph["context"])["answer"]
    assert answers == predictions
    assert any("--max_seq_length 64" in r.message and "--doc_stride 16" in r.message for r in caplog.records)
    # the command line too, and flags given still win over the trained windows
    paragraph = json.loads(qa["long"].read_text())["data"][0]["paragraphs"][0]
    q = paragraph["qas"][0]
    capsys.readouterr()
    argv = ["--model", str(qa["trained"]), "--question", q["question"], "--context", paragraph["context"]]
    assert qa_predict_main(argv) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == predictions[q["id"]]
    trained = predict(str(qa["trained"]), q["question"], paragraph["context"])
    given = predict(str(qa["trained"]), q["question"], paragraph["context"], max_seq_length=256)
    assert given["windows"] < trained["windows"]


@pytest.mark.parametrize(
    "flags",
    [("--max_seq_length", "64", "--doc_stride", "60"), ("--max_seq_length", "8")],
    ids=["stride-too-large", "no-room-for-context"],
)
def test_predict_refuses_the_windows_evaluate_refuses(qa, tmp_path, flags) -> None:
    from longify.qa.predict import predict

    path, question, context = one_question_file(qa, tmp_path / "one.json")
    with pytest.raises(LongifyError) as refused:
        qa_evaluate_main(eval_argv(qa["trained"], path, tmp_path / "e", *flags))
    values = dict(zip(flags[::2], map(int, flags[1::2]), strict=True))
    with pytest.raises(LongifyError) as also:
        predict(str(qa["trained"]), question, context, **{k.lstrip("-"): v for k, v in values.items()})
    assert str(also.value) == str(refused.value) and "\n" not in str(also.value)
    assert not (tmp_path / "e" / "results.json").exists()


# --- 5. small: recorded windows, log and help texts ---------------------------------------------------------


def test_a_refused_rerun_names_the_max_seq_length_that_was_used(qa, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["qa", "train", "--model_name_or_path", str(qa["model"]), "--do_train", "--train_file",
            str(qa["train"]), "--max_steps", "1", "--per_device_train_batch_size", "4", "--doc_stride", "16",
            "--save_steps", "1", "--report_to", "none", "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0  # no --max_seq_length: 384, but the model takes 256
    record = json.loads((out / "longify_run.json").read_text())
    assert record["defining_args"]["--max_seq_length"] == 256
    capsys.readouterr()
    assert main([*argv, "--max_seq_length", "128"]) == 2
    err = capsys.readouterr().err
    assert "--max_seq_length 128 (the run was made with 256)" in err
    assert main([*argv, "--max_seq_length", "256"]) == 0  # the very run: finished, nothing to do
    assert main([*argv, "--max_seq_length", "1000"]) == 0  # 256 again, once capped
