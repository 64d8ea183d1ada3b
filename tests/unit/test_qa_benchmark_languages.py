"""Languages in ``qa evaluate``'s scores: a plain SQuAD-format file is labelled with ``--lang`` (``en`` without
it); an average over part of a benchmark's published languages (XQuAD, MLQA) is warned about and recorded
(``average_complete``, ``average_missing``); ``--max_eval_samples`` counts MLQA's language pairs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from helpers import REPO, write_squad
from longify.cli import main

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
