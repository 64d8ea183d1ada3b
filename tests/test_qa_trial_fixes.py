"""What a maintainer's trial of ``longify qa`` found: predict answering unlike evaluate, an evaluation
replaced by another one (and a killed one leaving a mixed set of files), plain files labelled ``en`` under
``--lang``, partial benchmark averages given silently, and misleading messages and help."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import longify
from helpers import REPO, tiny_qa_setup, write_squad
from longify.cli import main
from longify.errors import LongifyError
from longify.qa.commands import qa_evaluate_main, qa_predict_main, qa_train_main

EVAL_NAMES = ("results.json", "predictions.json", "nbest_predictions.json", "question_scores.jsonl")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(longify.__file__).parents[1])}


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 256-position tiny Longformer, EASY SQuAD files, and that model fine-tuned for 2 steps in
    64-token windows with stride 16 and questions cut to 20 tokens (not the defaults 384 / 128 / 64)."""
    s = tiny_qa_setup(tmp_path_factory.mktemp("trial"), 16, 10)
    trained = s["root"] / "trained"
    argv = ["--model_name_or_path", str(s["model"]), "--do_train", "--train_file", str(s["train"]),
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
            "--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "20", "--seed", "3",
            "--save_strategy", "no", "--report_to", "none", "--output_dir", str(trained)]  # fmt: skip
    assert qa_train_main(argv) == 0
    return {**s, "trained": trained, "long": long_squad(s["root"] / "long.json", 10, seed=7)}


def long_squad(path: Path, n: int, seed: int) -> Path:
    """SQuAD questions over whole articles (a hundred tokens or more: several 64-token windows)."""
    import random

    from longify.demo.corpus import article, make_town

    rng = random.Random(seed)
    articles = []
    for i in range(n):
        town = make_town(rng)
        context = " ".join(article(town, rng, filler=4))
        qa = {"id": f"long{i}", "question": f"Who founded {town.name}?",
              "answers": [{"text": town.founder, "answer_start": context.index(f"by {town.founder}") + 3}]}  # fmt: skip
        articles.append({"title": town.name, "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def eval_argv(model: Path, predict_file: Path, out: Path, *more: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--predict_file", str(predict_file), "--output_dir", str(out),
            *more]  # fmt: skip


def one_question_file(s: dict[str, Path], path: Path) -> tuple[Path, str, str]:
    data = json.loads(s["dev"].read_text())
    data["data"] = data["data"][:1]
    path.write_text(json.dumps(data))
    paragraph = data["data"][0]["paragraphs"][0]
    return path, paragraph["qas"][0]["question"], paragraph["context"]


def eval_set(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in EVAL_NAMES if (folder / name).is_file()}


# --- 1. qa predict answers as qa evaluate does ---------------------------------------------------------------


@pytest.mark.integration
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


@pytest.mark.integration
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


# --- 2. an evaluation is not replaced by another one; its files are replaced as a set --------------------------


@pytest.mark.integration
def test_evaluate_refuses_a_rerun_with_other_arguments(qa, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    base = ["qa", "evaluate", *eval_argv(qa["trained"], qa["dev"], out)]
    assert main([*base, "--max_eval_samples", "3"]) == 0
    first = eval_set(out)
    assert json.loads(first["results.json"])["defining_args"]["--max_eval_samples"] == 3
    capsys.readouterr()
    assert main([*base, "--max_eval_samples", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max_eval_samples 4 (the run was made with 3)" in err
    assert "--overwrite_output_dir" in err and eval_set(out) == first
    assert main([*base, "--max_eval_samples", "3", "--doc_stride", "8"]) == 2  # the windows define it too
    assert "--doc_stride 8 (the run was made with 16)" in capsys.readouterr().err
    # scoring a predictions file into the folder of a model's evaluation is another evaluation
    scoring = ["qa", "evaluate", "--predictions", str(out / "predictions.json"), "--dataset", str(qa["dev"]),
               "--output_dir", str(out)]  # fmt: skip
    assert main(scoring) == 2 and eval_set(out) == first
    # the same arguments again: evaluated again (same predictions), the set replaced
    assert main([*base, "--max_eval_samples", "3"]) == 0
    again = eval_set(out)
    assert again["predictions.json"] == first["predictions.json"]
    assert main([*base, "--max_eval_samples", "4", "--overwrite_output_dir"]) == 0
    assert json.loads((out / "results.json").read_text())["total"] == 4
    assert len(json.loads((out / "predictions.json").read_text())) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


KILLED_EVALUATION = """
import os, sys, time
from pathlib import Path
out, signal_file = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
real = os.replace

def stalling(src, dst, *args, **kwargs):  # the moment results.json is put in place: the run is killed
    if Path(dst).resolve() == out / "results.json":
        signal_file.touch()
        time.sleep(300)
    return real(src, dst, *args, **kwargs)

os.replace = stalling
from longify.cli import main
sys.exit(main(sys.argv[3:]))
"""


def consistent(folder: Path) -> bool:
    """The files of one evaluation: as many predictions, n-best lists and question scores as it scored."""
    results = json.loads((folder / "results.json").read_text())
    lines = (folder / "question_scores.jsonl").read_text().splitlines()
    counts = {
        len(json.loads((folder / n).read_text())) for n in ("predictions.json", "nbest_predictions.json")
    }
    return counts == {results["total"]} and len(lines) == results["total"]


@pytest.mark.integration
def test_a_killed_evaluation_leaves_the_old_set_or_the_new_one(qa, tmp_path) -> None:
    out, signal_file = tmp_path / "eval", tmp_path / "writing"
    base = ["qa", "evaluate", *eval_argv(qa["trained"], qa["dev"], out)]
    assert main([*base, "--max_eval_samples", "3"]) == 0
    old = eval_set(out)
    cmd = [sys.executable, "-c", KILLED_EVALUATION, str(out), str(signal_file), *base,
           "--max_eval_samples", "5", "--overwrite_output_dir"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the evaluation never wrote"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # whatever results.json is there belongs with the files beside it
    assert not (out / "results.json").exists() or consistent(out)
    # the next command into the folder puts the old set back whole (here it is then refused: other arguments)
    assert main([*base, "--max_eval_samples", "4"]) == 2
    assert eval_set(out) == old and not [p for p in out.iterdir() if p.name.startswith(".")]


SWAP = """
import os, signal, sys
from pathlib import Path
from longify.qa.evalset import eval_files_into
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
real, count = os.replace, [0]

def killing(src, dst, *args, **kwargs):
    count[0] += 1
    if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)

with eval_files_into(out) as tmp:
    for name in ("results.json", "predictions.json", "nbest_predictions.json", "question_scores.jsonl"):
        (tmp / name).write_text("new " + name)
    os.replace = killing  # count the renames of the swap only
"""


@pytest.mark.integration
def test_a_swap_killed_at_any_rename_is_undone_or_completed(tmp_path) -> None:
    """SIGKILL at each rename of the set's swap (old set: 3 files, new set: 4): what is left is the old set or
    the new one (results.json never sits beside another set's files), and the next writer cleans up."""
    from longify.qa.evalset import recover_eval_sets

    old = {n: f"old {n}".encode() for n in EVAL_NAMES[:3]}
    new = {n: f"new {n}".encode() for n in EVAL_NAMES}
    outcomes = []
    for kill_at in range(1, 10):  # 1 record + 3 parked + 4 moved in; 9: not killed
        out = tmp_path / f"k{kill_at}"
        out.mkdir()
        for name, text in old.items():
            (out / name).write_bytes(text)
        (out / "model.safetensors").write_text("not ours")
        res = subprocess.run([sys.executable, "-c", SWAP, str(out), str(kill_at)], env=ENV, check=False)
        assert res.returncode == (-signal.SIGKILL if kill_at < 9 else 0)
        if (out / "results.json").exists():
            assert eval_set(out) in (old, new), kill_at
        recover_eval_sets(out)
        now = eval_set(out)
        assert now in (old, new), kill_at
        assert sorted(p.name for p in out.iterdir() if p.name not in EVAL_NAMES) == ["model.safetensors"]
        outcomes.append("new" if now == new else "old")
    assert outcomes[0] == "old" and outcomes[-1] == "new"


# --- 3. a plain SQuAD-format file under --lang ---------------------------------------------------------------


def test_a_plain_file_is_labelled_with_lang(tmp_path) -> None:
    from longify.qa.args import QADataArguments
    from longify.qa.pipeline import load_split

    dev = write_squad(tmp_path / "dev.json", 4, seed=5)
    gold = {q["id"]: q["answers"][0]["text"] for a in json.loads(dev.read_text())["data"]
            for q in a["paragraphs"][0]["qas"]}  # fmt: skip
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps(gold))
    for dataset in ([str(dev)], ["squad", "--predict_file", str(dev)]):
        argv = ["qa", "evaluate", "--predictions", str(preds), "--dataset", *dataset, "--metric", "mlqa"]
        out = tmp_path / f"o{len(dataset)}"
        assert main([*argv, "--lang", "de", "--output_dir", str(out)]) == 0
        result = json.loads((out / "results.json").read_text())
        assert list(result["per_language"]) == ["de"] and result["average"]["exact_match"] == 100.0
        assert main([*argv, "--output_dir", str(out / "en")]) == 0
        assert list(json.loads((out / "en" / "results.json").read_text())["per_language"]) == ["en"]
    examples = load_split(
        QADataArguments(lang="de", metric="mlqa"), str(dev), train=False, flag="--predict_file"
    )
    assert {e.language for e in examples} == {"de"}
    examples = load_split(QADataArguments(dataset="squad"), str(dev), train=False, flag="--predict_file")
    assert {e.language for e in examples} == {"en"}


# --- 4. an average over part of a benchmark's languages ------------------------------------------------------


def gold_predictions(examples) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for e in examples:
        from longify.qa.score import subset_of

        out.setdefault(subset_of(e), {})[e.id] = e.answers[0].text
    return out


def score_file(tmp_path: Path, dataset: str, folder: Path, *more: str) -> dict:
    from longify.qa.tasks import load_examples

    languages = list(more[more.index("--languages") + 1 :]) if "--languages" in more else None
    preds = tmp_path / f"{dataset}.json"
    preds.write_text(json.dumps(gold_predictions(load_examples(dataset, folder, languages=languages))))
    out = tmp_path / f"{dataset}-{len(more)}"
    argv = ["qa", "evaluate", "--predictions", str(preds), "--dataset", dataset, "--predict_file", str(folder),
            "--output_dir", str(out), *more]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


# the 11 languages of the published XQuAD averages (Artetxe et al. 2020; XTREME, Hu et al. 2020); the dataset's
# Romanian file came later and is in neither
PUBLISHED = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")


def test_a_partial_benchmark_average_is_warned_and_recorded(tmp_path, xquad_fixture_dir, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="longify"):
        result = score_file(tmp_path, "xquad", xquad_fixture_dir)
    assert sorted(result["average_languages"]) == ["de", "en", "zh"]
    assert result["average_complete"] is False
    missing = sorted(set(PUBLISHED) - {"de", "en", "zh"})
    assert sorted(result["average_missing"]) == missing
    (warning,) = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert all(lang in warning for lang in missing) and "not comparable" in warning
    assert "\n" not in warning

    full = tmp_path / "xquad-all"
    full.mkdir()
    for lang in PUBLISHED:
        shutil.copy(xquad_fixture_dir / "xquad.en.json", full / f"xquad.{lang}.json")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longify"):
        (tmp_path / "all").mkdir()
        complete = score_file(tmp_path / "all", "xquad", full)
    assert complete["average_complete"] is True and complete["average_missing"] == []
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    shutil.copy(xquad_fixture_dir / "xquad.en.json", full / "xquad.ro.json")  # all 12 files: ro is beyond
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longify"):
        (tmp_path / "twelve").mkdir()
        twelve = score_file(tmp_path / "twelve", "xquad", full)
    assert twelve["average_complete"] is False and twelve["average_missing"] == []
    (warning,) = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert "over ro, which it does not include" in warning

    mlqa = REPO / "tests" / "fixtures" / "qa" / "mlqa"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longify"):
        result = score_file(tmp_path, "mlqa", mlqa, "--languages", "en", "de")
    assert result["average_complete"] is False
    assert sorted(result["average_missing"]) == ["ar", "es", "hi", "vi", "zh"]
    assert any("MLQA" in r.message and "not comparable" in r.message for r in caplog.records)


# --- 5. small: recorded windows, log and help texts ---------------------------------------------------------


@pytest.mark.integration
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


def test_max_eval_samples_counts_mlqa_language_pairs(caplog) -> None:
    from longify.qa.pipeline import first_per_language
    from longify.qa.tasks.example import QAExample

    def ex(i: int, lang: str, q: str | None) -> QAExample:
        return QAExample(
            id=f"q{i}", question="q", context="c", answers=[], language=lang, question_language=q
        )

    pairs = [ex(i, c, q) for i, (c, q) in enumerate([("en", "en"), ("en", "de"), ("de", "en"), ("en", "en")])]
    with caplog.at_level(logging.INFO, logger="longify"):
        assert len(first_per_language(pairs, 1)) == 3
        assert len(first_per_language([ex(0, "en", None), ex(1, "de", None), ex(2, "de", None)], 1)) == 2
    messages = [r.message for r in caplog.records if "--max_eval_samples" in r.message]
    assert messages[0].endswith("each of 3 language pairs")
    assert messages[1].endswith("each of 2 languages")


def test_help_says_preprocessing_num_workers_is_ignored(capsys) -> None:
    assert main(["qa", "train", "-h"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    start = help_text.index("--preprocessing_num_workers")
    described = help_text[start : start + 400]
    assert "Processes for tokenisation" not in described and "ignored" in described.lower()
