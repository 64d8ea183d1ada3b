"""longify's scores against hand transcriptions of the official evaluations, on fixture sets built here with
perturbed predictions.

References transcribed (not imported, not longify code):
- TriviaQA: mandarjoshi90/triviaqa ``evaluation/triviaqa_evaluation.py`` (normalize_answer, f1_score,
  evaluate_triviaqa) and ``utils/dataset_utils.py`` (read_triviaqa_data, read_clean_part,
  get_key_to_ground_truth), at HEAD ca43b58;
- TyDi QA GoldP: SQuAD v1.1 ``evaluate-v1.1.py`` per language, the headline the mean over the 8 non-English
  languages (the TyDi QA GoldP protocol).
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO
from longify.cli import main as cli_main
from longify.errors import LongifyError
from longify.qa.score import evaluate_predictions_file

FIXTURES = REPO / "tests" / "fixtures" / "qa"


def qa_main(argv: list[str]) -> int:
    """``longify qa ARGV`` in this process."""
    return cli_main(["qa", *argv])


# --- the official TriviaQA evaluation, transcribed -------------------------------------------------------


def _tqa_normalize(s: str) -> str:
    s = s.replace("_", " ").lower()
    exclude = set(string.punctuation + "‘’´`")
    s = "".join(ch if ch not in exclude else " " for ch in s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split()).strip()


def _tqa_f1(prediction: str, truth: str) -> float:
    p, g = _tqa_normalize(prediction).split(), _tqa_normalize(truth).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _tqa_read(file: Path) -> dict[str, Any]:
    """read_triviaqa_data: verified files keep verified questions, and for Web verified documents only."""
    data = json.loads(file.read_text(encoding="utf-8"))
    if data["VerifiedEval"]:
        clean = []
        for datum in data["Data"]:
            if datum["QuestionPartOfVerifiedEval"]:
                if data["Domain"] == "Web":
                    for key in ("EntityPages", "SearchResults"):
                        datum[key] = [p for p in datum.get(key, []) if p["DocPartOfVerifiedEval"]]
                    assert len(datum["EntityPages"]) + len(datum["SearchResults"]) > 0
                clean.append(datum)
        data["Data"] = clean
    return data


def _tqa_keys(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """get_key_to_ground_truth: QuestionId for Wikipedia, QuestionId--Filename for Web."""
    if data["Domain"] == "Wikipedia":
        return {d["QuestionId"]: d["Answer"] for d in data["Data"]}
    keys = {}
    for d in data["Data"]:
        for page in d.get("EntityPages", []) + d.get("SearchResults", []):
            keys[f"{d['QuestionId']}--{page['Filename']}"] = d["Answer"]
    return keys


def official_triviaqa(file: Path, predictions: dict[str, str]) -> dict[str, float]:
    """evaluate_triviaqa(get_key_to_ground_truth(read_triviaqa_data(file)), predictions)."""
    truth = _tqa_keys(_tqa_read(file))
    em = f1 = 0.0
    for qid, answer in truth.items():
        if qid not in predictions:
            continue
        golds = answer["NormalizedAliases"] + [_tqa_normalize(a) for a in answer.get("HumanAnswers", [])]
        em += max(_tqa_normalize(predictions[qid]) == _tqa_normalize(g) for g in golds)
        f1 += max(_tqa_f1(predictions[qid], g) for g in golds)
    return {"exact_match": 100.0 * em / len(truth), "f1": 100.0 * f1 / len(truth), "denominator": len(truth)}


# --- a TriviaQA rc folder with every case the official script handles ------------------------------------

_ANSWERS = [
    ("Bob Dylan", ["bob dylan", "robert allen zimmerman", "dylan bob"], ["Dylan, Bob"]),
    ("Mount Everest", ["mount everest", "everest", "sagarmatha"], []),
    ("Sunset Boulevard", ["sunset boulevard", "sunset blvd"], ["Sunset_Blvd."]),
    ("The Who", ["who", "who band"], ["The Who’s"]),
    ("5,500,000", ["5 500 000", "5500000"], []),
    ("Rock 'n' Roll", ["rock n roll", "rock and roll"], ["Rock `n´ Roll"]),
]


def _question(i: int, rng: random.Random, domain: str) -> dict[str, Any]:
    value, aliases, human = _ANSWERS[i % len(_ANSWERS)]
    answer: dict[str, Any] = {"Value": value, "NormalizedAliases": aliases, "NormalizedValue": aliases[0]}
    if human:
        answer["HumanAnswers"] = human
    n_wiki = 0 if i == 3 else rng.randint(1, 2)  # tq_3: no evidence document at all
    n_web = 0 if i == 3 or domain == "wikipedia" else rng.randint(1, 3)
    wiki = [{"Filename": f"Page_{i}_{k}.txt", "Title": f"Page {i} {k}"} for k in range(n_wiki)]
    web = [{"Filename": f"{i}/{i}_{k}.txt", "Title": f"Result {k}"} for k in range(n_web)]
    pages = wiki + web
    for page in pages:
        page["DocPartOfVerifiedEval"] = rng.random() < 0.6
    if pages and not any(p["DocPartOfVerifiedEval"] for p in pages):
        pages[0]["DocPartOfVerifiedEval"] = True
    datum = {
        "QuestionId": f"tq_{i}",
        "Question": f"Question number {i}?",
        "Answer": answer,
        "QuestionPartOfVerifiedEval": i % 3 != 1 and bool(pages or domain == "wikipedia"),
        "EntityPages": wiki,
    }
    if web or domain == "web":
        datum["SearchResults"] = web
    return datum


def _evidence_text(i: int, rng: random.Random) -> str:
    value, aliases, _ = _ANSWERS[i % len(_ANSWERS)]
    if i == 5 or rng.random() < 0.15:
        return rng.choice(["", "  \n\t "])  # empty evidence: still scored by the official script
    return f"Some words about it. The answer is {value}, also {rng.choice(aliases)}. More text here.\n"


@pytest.fixture(scope="module")
def rc_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qa/{wikipedia,web}-dev.json and their verified-* versions, plus evidence/ (some of it empty)."""
    root = tmp_path_factory.mktemp("triviaqa-rc")
    rng = random.Random(7)
    for domain, declared in (("wikipedia", "Wikipedia"), ("web", "Web")):
        data = [_question(i, rng, domain) for i in range(14)]
        for name, verified in ((f"{domain}-dev.json", False), (f"verified-{domain}-dev.json", True)):
            payload = {
                "Data": data,
                "Domain": declared,
                "Split": "dev",
                "Version": 1.0,
                "VerifiedEval": verified,
            }
            (root / "qa").mkdir(exist_ok=True)
            (root / "qa" / name).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        for datum in data:
            i = int(datum["QuestionId"][3:])
            for key, folder in (("EntityPages", "wikipedia"), ("SearchResults", "web")):
                for page in datum.get(key, []):
                    file = root / "evidence" / folder / page["Filename"]
                    file.parent.mkdir(parents=True, exist_ok=True)
                    file.write_text(_evidence_text(i, rng), encoding="utf-8")
    return root


def _perturb(rng: random.Random, i: int) -> str:
    value, aliases, human = _ANSWERS[i % len(_ANSWERS)]
    alias = rng.choice(aliases)
    choices = [
        alias,
        f"The {alias.upper()}!",
        value,
        alias.split()[0],
        f"{alias} and more words",
        "completely wrong",
        "",
        f"the_{alias.replace(' ', '_')}",
        *human,
    ]
    return rng.choice(choices)


def _predictions(file: Path, seed: int) -> dict[str, str]:
    """Official-keyed predictions for ``file``: perturbed answers, ~15% missing, plus keys of no question."""
    rng = random.Random(seed)
    data = json.loads(file.read_text(encoding="utf-8"))
    keys = _tqa_keys(data)
    preds = {}
    for key in keys:
        if rng.random() < 0.15:
            continue
        preds[key] = _perturb(rng, int(key.split("--")[0][3:]))
    preds["tq_999"] = "Bob Dylan"
    preds["tq_999--Nowhere.txt"] = "Everest"
    return preds


def _check(result: dict[str, Any], official: dict[str, float]) -> None:
    assert result["average"]["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert result["average"]["f1"] == pytest.approx(official["f1"], abs=1e-9)
    assert result["total"] == official["denominator"]


@pytest.mark.parametrize("name", ["web-dev.json", "wikipedia-dev.json"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triviaqa_file_scores_as_the_official_script(rc_folder: Path, name: str, seed: int, tmp_path: Path):
    """The domain comes from the file's Domain field; Web per (question, document), Wikipedia per question
    (a question without documents, or with empty evidence, still counts and scores 0 when unanswered)."""
    file = rc_folder / "qa" / name
    preds = _predictions(file, seed)
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(preds))
    official = official_triviaqa(file, preds)
    _check(evaluate_predictions_file(path, "triviaqa", file), official)


@pytest.mark.parametrize("domain", ["web", "wikipedia"])
def test_triviaqa_verified_subsets_score_as_the_official_script(rc_folder: Path, domain: str, tmp_path: Path):
    file = rc_folder / "qa" / f"verified-{domain}-dev.json"
    preds = _predictions(rc_folder / "qa" / f"{domain}-dev.json", 3)  # holds keys the verified set drops
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(preds))
    official = official_triviaqa(file, preds)
    _check(evaluate_predictions_file(path, "triviaqa", file), official)
    _check(evaluate_predictions_file(path, f"triviaqa-{domain}", rc_folder, split="verified-dev"), official)


def test_triviaqa_scoring_needs_no_evidence(rc_folder: Path, tmp_path: Path):
    """The official script never reads the evidence: a lone qa file (no evidence/ beside it) is enough."""
    for name in ("web-dev.json", "wikipedia-dev.json"):
        alone = tmp_path / name
        alone.write_bytes((rc_folder / "qa" / name).read_bytes())
        preds = _predictions(alone, 4)
        path = tmp_path / "p.json"
        path.write_text(json.dumps(preds))
        _check(evaluate_predictions_file(path, "triviaqa", alone), official_triviaqa(alone, preds))


def test_triviaqa_domain_flag_must_agree_with_the_file(rc_folder: Path, tmp_path: Path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"tq_0": "x"}))
    with pytest.raises(LongifyError, match=r"wikipedia-dev.json: its Domain is 'Wikipedia', not web"):
        evaluate_predictions_file(path, "triviaqa-web", rc_folder / "qa" / "wikipedia-dev.json")


def test_cli_scores_triviaqa_web_and_writes_results_into_output_dir(rc_folder: Path, tmp_path: Path, capsys):
    file = rc_folder / "qa" / "web-dev.json"
    preds = _predictions(file, 5)
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(preds))
    out = tmp_path / "scored"
    argv = [
        "evaluate",
        "--predictions",
        str(path),
        "--dataset",
        "triviaqa-web",
        "--predict_file",
        str(rc_folder),
    ]
    assert qa_main([*argv, "--output_dir", str(out)]) == 0
    official = official_triviaqa(file, preds)
    assert f"EM {official['exact_match']:.2f} F1 {official['f1']:.2f}" in capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    _check(written, official)
    assert written["dataset"] == "triviaqa-web" and written["predictions"] == str(path)


def test_cli_triviaqa_word_budget(rc_folder: Path):
    from longify.qa.args import parse_qa_args
    from longify.qa.pipeline import load_split

    argv = ["--dataset", "triviaqa-web", "--predict_file", str(rc_folder), "--output_dir", "x"]
    data = parse_qa_args([*argv, "--triviaqa_word_budget", "3"]).data
    examples = load_split(data, data.predict_file, train=False, flag="--predict_file")
    assert examples and all(len(e.context.split()) <= 3 for e in examples)
    assert all(e.id.count("--") == 1 and e.group_id is None for e in examples)
    whole = parse_qa_args([*argv, "--triviaqa_word_budget", "0"]).data
    longest = max(len(e.context.split()) for e in load_split(whole, str(rc_folder), train=False, flag="f"))
    assert longest > 10
    squad = parse_qa_args(["--dataset", "squad", "--triviaqa_word_budget", "3", "--output_dir", "x"]).data
    with pytest.raises(LongifyError, match=r"--triviaqa_word_budget: not an option of --dataset squad"):
        load_split(squad, str(FIXTURES / "squad"), train=False, flag="--predict_file")


@pytest.mark.parametrize("domain", ["wikipedia", "web"])
def test_rescoring_a_runs_predictions_reproduces_its_results(
    rc_folder: Path, domain: str, tmp_path: Path, tiny_sources: dict[str, Path]
):
    """A model run's predictions.json is keyed as the official script reads it (Wikipedia: QuestionId, the
    best-scored document's answer; Web: QuestionId--Filename); scoring it again, by us or by the official
    script, gives the run's results.json."""
    out = tmp_path / "run"
    model = str(tiny_sources["roberta"])
    argv = [
        "evaluate",
        "--model_name_or_path",
        model,
        "--dataset",
        {"web": "triviaqa-web"}.get(domain, "triviaqa"),
    ]
    argv += ["--predict_file", str(rc_folder), "--max_seq_length", "64", "--doc_stride", "16"]
    assert qa_main([*argv, "--output_dir", str(out), "--max_query_length", "16"]) == 0
    results = json.loads((out / "results.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    file = rc_folder / "qa" / f"{domain}-dev.json"
    truth = _tqa_keys(_tqa_read(file))
    assert set(predictions) <= set(truth) and len(predictions) > len(truth) / 2  # empty evidence: none
    _check(results, official_triviaqa(file, predictions))
    again = evaluate_predictions_file(out / "predictions.json", f"triviaqa-{domain}", rc_folder)
    assert again["average"] == results["average"] and again["per_language"] == results["per_language"]


# --- TyDi QA GoldP: the non-English mean ----------------------------------------------------------------

_TYDI = ["english", "arabic", "bengali", "finnish", "indonesian", "korean", "russian", "swahili", "telugu"]


def _squad_normalize(s: str) -> str:
    """evaluate-v1.1.py's normalize_answer."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def _squad_f1(prediction: str, truth: str) -> float:
    p, g = _squad_normalize(prediction).split(), _squad_normalize(truth).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    return 2 * (same / len(p)) * (same / len(g)) / (same / len(p) + same / len(g))


def _official_squad(dataset: list[dict[str, Any]], predictions: dict[str, str]) -> dict[str, float]:
    """evaluate-v1.1.py's evaluate(dataset, predictions)."""
    f1 = em = total = 0.0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                golds = [a["text"] for a in qa["answers"]]
                pred = predictions[qa["id"]]
                em += max(_squad_normalize(pred) == _squad_normalize(g) for g in golds)
                f1 += max(_squad_f1(pred, g) for g in golds)
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}


def test_tydiqa_goldp_headline_is_the_non_english_mean(tmp_path: Path):
    rng = random.Random(11)
    words = ["red river", "the old city", "Kenya", "forty two", "blue whale", "an island", "Mars"]
    articles, predictions = [], {}
    for lang in _TYDI:
        for n in range(rng.randint(2, 5)):
            gold = rng.choice(words)
            context = f"Some text. {gold} is here. More text."
            qid = f"{lang}-{1000 + n}-{n}"
            qa = {"id": qid, "question": "What?", "answers": [{"text": gold, "answer_start": 11}]}
            articles.append({"title": f"{lang} {n}", "paragraphs": [{"context": context, "qas": [qa]}]})
            pick = rng.random()
            if pick < 0.5:
                predictions[qid] = rng.choice([gold, gold.upper() + ".", f"the {gold}"])
            elif pick < 0.8:
                predictions[qid] = rng.choice(words) + " extra"
    data = tmp_path / "tydiqa-goldp-v1.1-dev.json"
    data.write_text(json.dumps({"data": articles, "version": "1.1"}))
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(predictions))
    per_lang = {}
    for lang in _TYDI:
        subset = [a for a in articles if a["paragraphs"][0]["qas"][0]["id"].startswith(lang + "-")]
        per_lang[lang] = _official_squad(subset, predictions)
    non_english = [per_lang[lang] for lang in _TYDI[1:]]
    everyone = list(per_lang.values())
    result = evaluate_predictions_file(path, "tydiqa", data)
    for key in ("exact_match", "f1"):
        assert result["average"][key] == pytest.approx(sum(s[key] for s in non_english) / 8, abs=1e-9)
        assert result["average_all"][key] == pytest.approx(sum(s[key] for s in everyone) / 9, abs=1e-9)
        assert result["per_language"]["en"][key] == pytest.approx(per_lang["english"][key], abs=1e-9)
    assert "non-English" in result["average_definition"] and "en" not in result["average_languages"]
    assert len(result["average_languages"]) == 8
    english_only = evaluate_predictions_file(path, "tydiqa", data, languages=["en"])
    assert english_only["average"]["f1"] == pytest.approx(per_lang["english"]["f1"], abs=1e-9)
    assert "only en evaluated" in english_only["average_definition"]
    no_english = evaluate_predictions_file(path, "tydiqa", data, languages=["ar", "fi"])
    assert (
        no_english["average"] == no_english["average_all"] and "only" not in no_english["average_definition"]
    )


# --- MLQA: G-XLT pairs from the command line; files holding more pairs than evaluated -----------------

MLQA = FIXTURES / "mlqa"


def test_mlqa_gxlt_from_the_cli(tmp_path: Path, capsys):
    gold = {
        "en": ["the capital of France", "about two million"],
        "de": ["die Hauptstadt von Frankreich", "x"],
    }
    ids = ["6f1a0c2e9b7d4e01", "a3c5e7f90b1d2e44"]
    pairs = {"en": "en", "de": "de", "en-de": "en", "de-en": "de"}  # subset -> context language
    preds = {subset: dict(zip(ids, gold[c], strict=True)) for subset, c in pairs.items()}
    preds["en-de"] = {ids[0]: "capital of France"}  # EM 100 (article dropped), second missing
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preds))
    argv = ["evaluate", "--predictions", str(path), "--predict_file", str(MLQA), "--languages", "en", "de"]
    assert qa_main([*argv, "--dataset", "mlqa-gxlt", "--output_dir", str(tmp_path / "a")]) == 0
    result = json.loads((tmp_path / "a" / "results.json").read_text())
    assert sorted(result["per_language"]) == ["de", "de-en", "en", "en-de"]
    assert result["per_language"]["en-de"]["exact_match"] == 50.0
    assert result["per_language"]["de"]["exact_match"] == 50.0  # "x" is wrong
    assert result["average"]["exact_match"] == pytest.approx((100 + 50 + 50 + 50) / 4)
    assert (
        qa_main([*argv, "--dataset", "mlqa", "--mlqa_pairs", "en-de", "--output_dir", str(tmp_path / "b")])
        == 0
    )
    only = json.loads((tmp_path / "b" / "results.json").read_text())
    assert list(only["per_language"]) == ["en-de"] and only["average"]["exact_match"] == 50.0
    assert only["extra"] == 6  # the other pairs' predictions: ignored, not an error


def test_mlqa_predictions_with_pairs_not_evaluated(tmp_path: Path):
    preds = {
        "en": {"6f1a0c2e9b7d4e01": "the capital of France", "a3c5e7f90b1d2e44": "two million"},
        "en-de": {"6f1a0c2e9b7d4e01": "wrong"},
        "zh-zh": {"x": "y"},
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preds))
    result = evaluate_predictions_file(path, "mlqa", MLQA, languages=["en"])
    assert list(result["per_language"]) == ["en"] and result["average"]["exact_match"] == 50.0
    assert result["extra"] == 2


# --- MLM pseudo bits per character: what is counted ---------------------------------------------------


def test_pseudo_bits_per_char_counts(tmp_path: Path):
    """Characters: stripped non-blank lines (no newlines, no line-edge whitespace); tokens: every id of the
    text, ``<unk>`` included; ``<unk>`` is a special token, so it is never masked and never scored."""
    import math

    import numpy as np

    from longify.mlm.data import load_blocks, mask_for_eval
    from longify.mlm.metrics import MLMSums, mlm_metrics
    from longify.tiny import train_tokenizer

    tok = train_tokenizer("bert", model_max_length=64)
    lines = ["  the cat sat on the mat ☃ ☃  ", "", "\t", " a dog ran ☃ far away\t", "the end ☃ ☃ ☃"] * 20
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    blocks, stats = load_blocks(str(corpus), tok, 16, cache_dir=str(tmp_path / "c"))
    kept = [line.strip() for line in lines if line.strip()]
    assert stats.n_chars == sum(len(line) for line in kept)  # by hand: no "\n", no edge blanks
    ids = [i for line in kept for i in tok(line, add_special_tokens=False)["input_ids"]]
    assert tok.unk_token_id in ids and stats.n_tokens == len(ids)  # <unk> counted
    masked = mask_for_eval(blocks, tok, mlm_probability=0.5, seed=0)
    orig, labels = np.array(blocks["input_ids"]), np.array(masked["labels"])
    assert (orig == tok.unk_token_id).any() and (labels[orig == tok.unk_token_id] == -100).all()
    metrics = mlm_metrics(MLMSums(nats=30.0, masked_tokens=10), stats.n_tokens, stats.n_chars)
    assert "bits_per_char" not in metrics
    expected = 3.0 * stats.n_tokens / stats.n_chars / math.log(2)
    assert metrics["pseudo_bits_per_char"] == pytest.approx(expected)
