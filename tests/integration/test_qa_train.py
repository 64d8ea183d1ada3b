"""``longify qa train / evaluate / predict`` end to end on a tiny converted Longformer and an easy fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from helpers import REPO, run_squad_argv, tiny_qa_setup
from longify.errors import LongifyError
from longify.qa.commands import qa_evaluate_main, qa_predict_main, qa_train_main
from longify.qa.predict import predict
from longify.tiny import save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_qa_setup(tmp_path_factory.mktemp("qa"), 64, 40, names=("train-v1.1", "dev-v1.1"))


def test_seed_command_trains_and_beats_the_untrained_model(
    setup: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    s = setup
    before_dir = s["root"] / "untrained"
    assert qa_evaluate_main(
        ["--model_name_or_path", str(s["model"]), "--predict_file", str(s["dev"]), "--seed", "42",
         "--max_seq_length", "64", "--doc_stride", "16", "--output_dir", str(before_dir)]
    ) == 0  # fmt: skip
    before_record = json.loads((before_dir / "results.json").read_text())
    before = before_record["average"]["f1"]
    assert before_record["qa_head"] == "random"  # a masked-LM checkpoint: its span head starts random

    out = s["root"] / "debug_squad"
    assert qa_train_main(run_squad_argv(s, out)) == 0
    assert "longify qa train" in capsys.readouterr().out
    for name in (
        "predictions.json",
        "nbest_predictions.json",
        "results.json",
        "config.json",
        "tokenizer.json",
    ):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    after = results["average"]["f1"]
    with capsys.disabled():
        print(f"\nF1 untrained {before:.1f} -> trained {after:.1f}")
    assert after > before + 30
    assert results["seed"] == 42 and "transformers" in results["versions"]
    again = s["root"] / "trained-eval"
    assert qa_evaluate_main(["--model_name_or_path", str(out), "--predict_file", str(s["dev"]),
                             "--max_seq_length", "64", "--doc_stride", "16", "--output_dir", str(again)]) == 0  # fmt: skip
    assert json.loads((again / "results.json").read_text())["qa_head"] == "trained"
    assert results["per_language"]["en"]["total"] == 40
    assert results["analysis"]["answer_position"]["0-511"]["count"] == 40
    assert results["arguments"]["model_type"] == "roberta" and results["arguments"]["do_lower_case"]
    assert any("--per_gpu_train_batch_size" in n for n in results["arguments"]["legacy_notes"])

    model = AutoModelForQuestionAnswering.from_pretrained(out)
    assert model.config.model_type == "longformer"
    AutoTokenizer.from_pretrained(out)
    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert set(predictions) == set(nbest) and len(predictions) == 40

    # predict answers like evaluation does (same windows, mask, decoding)
    dev = json.loads(s["dev"].read_text())["data"]
    paragraph = dev[0]["paragraphs"][0]
    qa = paragraph["qas"][0]
    answer = predict(str(out), qa["question"], paragraph["context"], max_seq_length=64, doc_stride=16)
    assert answer["answer"] == predictions[qa["id"]]
    assert paragraph["context"][answer["start"] : answer["end"]] == answer["answer"]
    capsys.readouterr()
    assert qa_predict_main(["--model", str(out), "--question", qa["question"], "--context", paragraph["context"],
                            "--max-seq-length", "64", "--doc-stride", "16"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["answer"] == predictions[qa["id"]]
    context_file = s["root"] / "context.txt"
    context_file.write_text(paragraph["context"], encoding="utf-8")
    assert qa_predict_main(["--model", str(out), "--question", qa["question"], "--context-file", str(context_file),
                            "--max-seq-length", "64", "--doc-stride", "16"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["start"] == answer["start"]
    with pytest.raises(LongifyError, match="--context-file"):
        qa_predict_main(
            ["--model", str(out), "--question", "q", "--context-file", str(s["root"] / "nope.txt")]
        )

    # score the written predictions without a model, like the official script
    scored_dir = s["root"] / "scored"
    assert qa_evaluate_main(["--predictions", str(out / "predictions.json"), "--dataset", str(s["dev"]),
                             "--output_dir", str(scored_dir)]) == 0  # fmt: skip
    assert f"F1 {after:.2f}" in capsys.readouterr().out


def test_continuous_evaluation_logs_em_f1_to_tensorboard(setup: dict[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = setup
    out = s["root"] / "continuous"
    argv = run_squad_argv(s, out, max_steps="4", eval_steps="2", logging_dir=str(out / "tb"))
    assert qa_train_main([*argv, "--evaluate_during_training", "--max_eval_samples", "8"]) == 0
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "eval/f1" in tags and "eval/exact_match" in tags
    # by step: two event files written in one second are read in name order, where writer 10 sorts before 9
    assert sorted(e.step for e in events.Scalars("eval/f1"))[:2] == [2, 4]


def test_xquad_languages_with_a_short_xlmr_model(tmp_path: Path) -> None:
    """Real XQuAD files (when present): ids repeat across languages, so predictions nest by language and
    metrics come per language; a non-Longformer model gets no global mask and strided windows."""
    from helpers import SHARED_XQUAD
    from longify.loading import load_tokenizer
    from longify.qa.args import QADataArguments
    from longify.qa.models import load_qa_model
    from longify.qa.pipeline import flat_metrics, run_evaluation
    from longify.qa.tasks import load_examples

    if not SHARED_XQUAD.is_dir():
        pytest.skip("shared XQuAD files not present")
    examples = []
    for lang in ("en", "zh"):
        examples += list(load_examples("xquad", SHARED_XQUAD, languages=[lang]))[:6]
    model_dir = save_tiny("xlm-roberta", tmp_path / "xlmr", max_len=64)
    data = QADataArguments(dataset="xquad", max_seq_length=64, doc_stride=16, max_query_length=24)
    output = run_evaluation(load_qa_model(str(model_dir)), load_tokenizer(str(model_dir)), examples, data)
    assert set(output.predictions) == {"en", "zh"} and len(output.predictions["zh"]) == 6
    assert output.result["windows"] > len(examples)
    for lang in ("en", "zh"):
        for qid, text in output.predictions[lang].items():
            context = next(e.context for e in examples if e.id == qid and e.language == lang)
            assert text in context and text == text.strip()
    assert {"eval_en_f1", "eval_zh_f1", "eval_f1"} <= set(flat_metrics(output.result))


def test_torchrun_two_processes(setup: dict[str, Path], tmp_path: Path) -> None:
    """Data-parallel QA training on CPU (gloo): one process writes the model and the results."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    argv = run_squad_argv(setup, out, num_train_epochs="1.0", disable_tqdm="true")
    cmd = [
        str(torchrun),
        "--standalone",  # a free port
        "--nproc_per_node",
        "2",
        "-m",
        "longify.cli",
        "-q",
        "qa",
        "train",
        *argv,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    dev_questions = sum(
        len(q["qas"]) for a in json.loads(setup["dev"].read_text())["data"] for q in a["paragraphs"]
    )
    assert results["per_language"]["en"]["total"] == dev_questions  # every question scored once, not per rank
    assert results["world_size"] == 2 and not list(out.glob(".save-*"))
    AutoModelForQuestionAnswering.from_pretrained(out)
