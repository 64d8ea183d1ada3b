"""Official QA metrics (SQuAD v1.1, MLQA, TriviaQA) and scoring a predictions file."""

from __future__ import annotations

import json
import re
import string
import sys
import unicodedata
from collections import Counter

import pytest

from helpers import REPO, SHARED_XQUAD
from longify.errors import LongifyError
from longify.qa.metrics import (
    get_metric,
    mixed_segmentation,
    mlqa_exact_match,
    mlqa_f1,
    mlqa_normalize,
    score_one,
    squad_exact_match,
    squad_f1,
    squad_normalize,
    triviaqa_exact_match,
    triviaqa_f1,
    triviaqa_normalize,
)
from longify.qa.score import aggregate_group, evaluate_predictions_file, score_predictions
from longify.qa.tasks import load_examples

FIXTURES = REPO / "tests" / "fixtures" / "qa"
XQUAD = SHARED_XQUAD


# --- per-pair metrics, hand-computed -------------------------------------------------------------------


def test_squad_normalize_lowers_strips_ascii_punctuation_and_articles():
    assert squad_normalize("The  Cat's hat!") == "cats hat"
    assert squad_normalize("an Apple, a day") == "apple day"
    assert (
        squad_normalize("«Paris»") == "«paris»"
    )  # not string.punctuation: kept, as the official script does


def test_squad_f1_hand_computed():
    # pred "cat sat on mat" (4 tokens), gold "cat on mat" (3): 3 shared, P=3/4, R=1, F1=2*.75/1.75=6/7
    assert squad_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    assert squad_exact_match("Denver Broncos", "the Denver Broncos.") == 1.0
    assert squad_exact_match("Broncos", "Denver Broncos") == 0.0
    # repeated tokens count by multiplicity: pred [a1 a1 b] vs gold [a1 b b] share 2 -> P=R=2/3
    assert squad_f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_max_over_gold_answers():
    golds = ["10th and 11th centuries", "in the 10th and 11th centuries"]
    # vs gold 1: 1 shared of 2 pred / 4 gold tokens -> 2*(1/2*1/4)/(3/4) = 1/3; vs gold 2 (5 tokens): 2/7
    assert score_one("squad", "10th century", golds) == {"exact_match": 0.0, "f1": pytest.approx(1 / 3)}
    assert score_one("squad", "anything", []) == {"exact_match": 0.0, "f1": 0.0}


def test_empty_answers_follow_the_official_quirk():
    # both normalise to "" -> EM 1 but F1 0 (no shared token), exactly as evaluate-v1.1.py
    assert squad_exact_match("", "the") == 1.0
    assert squad_f1("", "the") == 0.0


def test_punctuation_differs_between_squad_and_triviaqa():
    # SQuAD removes the commas ("5500000"); TriviaQA turns them into spaces ("5 500 000")
    assert squad_exact_match("5,500,000", "5500000") == 1.0
    assert triviaqa_exact_match("5,500,000", "5500000") == 0.0
    assert triviaqa_f1("5,500,000", "5 500 000") == 1.0


def test_triviaqa_normalize():
    assert triviaqa_normalize("Bob_Dylan") == "bob dylan"
    assert triviaqa_normalize("Rock ’n’ Roll") == "rock n roll"
    assert triviaqa_normalize("The Who's `Tommy´") == "who s tommy"
    # squad keeps the curly quotes (not ASCII punctuation)
    assert squad_normalize("Rock ’n’ Roll") == "rock ’n’ roll"


def test_mlqa_unicode_punctuation_and_articles():
    assert mlqa_exact_match("«Paris»", "Paris", "en") == 1.0
    assert squad_exact_match("«Paris»", "Paris") == 0.0
    assert mlqa_exact_match("die Hauptstadt von Frankreich", "Hauptstadt von Frankreich", "de") == 1.0
    # squad: "die" is not an English article -> 3 shared of 4 pred / 3 gold tokens -> 6/7
    assert squad_f1("die Hauptstadt von Frankreich", "Hauptstadt von Frankreich") == pytest.approx(6 / 7)
    assert mlqa_exact_match("la ciudad", "ciudad", "es") == 1.0
    assert mlqa_normalize("những ngôi nhà của tôi", "vi") == "ngôi nhà tôi"
    # Arabic: the official regex removes every "ال" anywhere in the text
    assert mlqa_normalize("القاهرة", "ar") == "قاهرة"
    assert mlqa_exact_match("القاهرة", "قاهرة", "ar") == 1.0


def test_mlqa_chinese_mixed_segmentation():
    assert mixed_segmentation("2016年nba总决赛") == ["2016", "年", "nba", "总", "决", "赛"]
    assert mlqa_normalize("他是一个 Hello, World 的人。", "zh") == "他 是 一 个 hello world 的 人"
    # gold 8 characters, pred 4 of them: P=1, R=1/2 -> F1=2/3; SQuAD sees one token each -> 0
    assert mlqa_f1("排名第六", "在联盟中排名第六", "zh") == pytest.approx(2 / 3)
    assert squad_f1("排名第六", "在联盟中排名第六") == 0.0
    # "308" vs "308分": tokens [308] vs [308, 分] -> 2/3
    assert mlqa_f1("308", "308分", "zh") == pytest.approx(2 / 3)


def test_mlqa_unknown_language_uses_whitespace_and_no_articles():
    assert mlqa_normalize("The «Дом»", "ru") == "the дом"


def test_unknown_metric_is_a_user_error():
    with pytest.raises(LongifyError, match=r"--metric bleu: expected one of \['mlqa', 'squad', 'triviaqa'\]"):
        get_metric("bleu")


# --- scoring a predictions file ------------------------------------------------------------------------


def test_score_squad_fixture_hand_computed():
    examples = list(load_examples("squad", FIXTURES / "squad"))
    predictions = {
        "sq-001": "France",  # EM 1, F1 1
        "sq-002": "10th century",  # EM 0, F1 1/3 (see test_max_over_gold_answers)
        "sq-003": "Viking leader",  # gold "a Viking leader": EM 1, F1 1
        "sq-004": "in 911",  # gold "911": P=1/2, R=1 -> F1 2/3
        # sq-005 missing -> 0, 0
        "not-a-question": "x",
    }
    result = score_predictions(predictions, examples)
    assert result["per_language"]["en"] == {
        "exact_match": pytest.approx(40.0),
        "f1": pytest.approx(60.0),  # (1 + 1/3 + 1 + 2/3 + 0) / 5
        "total": 5,
        "missing": 1,
    }
    assert result["average"] == {"exact_match": pytest.approx(40.0), "f1": pytest.approx(60.0)}
    assert (result["total"], result["missing"], result["extra"]) == (5, 1, 1)


XQUAD_PREDICTIONS = {
    "en": {"xq-1": "308", "xq-2": "sixth"},  # EM 1, F1 1; EM 0, F1 2*(1*1/3)/(4/3)=1/2 -> 50 / 75
    "de": {"xq-1": "308 Punkte", "xq-2": "den sechsten Platz in der Liga"},  # F1 2/3; EM 1 -> 50 / 83.33
    "zh": {"xq-1": "308", "xq-2": "排名第六"},  # squad: 0 / 0; mlqa: F1 2/3 and 2/3 -> 0 / 66.67
}


def test_score_xquad_fixture_squad_and_mlqa_metric(xquad_fixture_dir):
    examples = list(load_examples("xquad", xquad_fixture_dir))
    squad = score_predictions(XQUAD_PREDICTIONS, examples, metric="squad")
    assert squad["per_language"]["en"]["f1"] == pytest.approx(75.0)
    assert squad["per_language"]["de"]["f1"] == pytest.approx(250 / 3)
    assert squad["per_language"]["zh"]["f1"] == 0.0
    assert squad["average"]["exact_match"] == pytest.approx(100 / 3)
    assert squad["average"]["f1"] == pytest.approx((75 + 250 / 3) / 3)
    mlqa = score_predictions(XQUAD_PREDICTIONS, examples, metric="mlqa")
    assert mlqa["per_language"]["zh"] == {
        "exact_match": 0.0,
        "f1": pytest.approx(200 / 3),
        "total": 2,
        "missing": 0,
    }
    assert mlqa["average"]["f1"] == pytest.approx((75 + 250 / 3 + 200 / 3) / 3)


def test_flat_predictions_with_ids_shared_across_languages_is_an_error(xquad_fixture_dir):
    examples = list(load_examples("xquad", xquad_fixture_dir))
    with pytest.raises(LongifyError, match=r"preds.json: question xq-1: id repeats across languages"):
        score_predictions({"xq-1": "308"}, examples, source="preds.json")
    one = list(load_examples("xquad", xquad_fixture_dir, languages=["de"]))
    assert score_predictions({"xq-1": "308"}, one)["per_language"]["de"]["exact_match"] == 50.0


def test_predictions_matching_no_question_is_an_error():
    examples = list(load_examples("squad", FIXTURES / "squad"))
    with pytest.raises(LongifyError, match=r"p.json: none of its 1 prediction ids is a question.*'zzz'"):
        score_predictions({"zzz": "a"}, examples, source="p.json")
    with pytest.raises(LongifyError, match=r"^p.json: holds no predictions \(expected an object"):
        score_predictions({}, examples, source="p.json")


def test_prediction_values_may_carry_scores_or_be_nbest_lists():
    examples = list(load_examples("squad", FIXTURES / "squad"))
    predictions = {
        "sq-001": {"text": "France", "score": 3.0},
        "sq-004": [{"text": "911", "probability": 0.9}],
    }
    result = score_predictions(predictions, examples)
    assert result["per_language"]["en"]["exact_match"] == pytest.approx(40.0)
    with pytest.raises(LongifyError, match="question sq-001: expected answer text, got int"):
        score_predictions({"sq-001": 5}, examples)


def test_aggregate_group():
    assert aggregate_group([("a", 0.1), ("b", 0.7), ("c", 0.5)]) == "b"
    assert aggregate_group([("a", None), ("b", None), ("b ", None)]) == "b"
    assert aggregate_group([("a", None), ("b", 1.0)]) == "a"  # not all scored: majority, ties -> first


def test_triviaqa_wikipedia_is_scored_per_question_web_per_document():
    wiki = list(load_examples("triviaqa", FIXTURES / "triviaqa", domain="wikipedia"))
    per_doc = {
        "tc_101--Bob_Dylan.txt": {"text": "Bob Dylan", "score": 2.0},
        "tc_101--Duluth,_Minnesota.txt": {"text": "Duluth", "score": 5.0},  # wins: question tc_101 wrong
        "tc_202--Mount_Everest.txt": {"text": "Sagarmatha", "score": 1.0},
    }
    result = score_predictions(per_doc, wiki, metric="triviaqa")
    assert result["total"] == 2 and result["per_language"]["en"]["exact_match"] == 50.0
    per_question = {"tc_101": "Dylan, Bob", "tc_202": "the Everest"}  # official keys: QuestionId
    assert score_predictions(per_question, wiki, metric="triviaqa")["average"]["exact_match"] == 100.0
    web = list(load_examples("triviaqa", FIXTURES / "triviaqa", domain="web"))
    result = score_predictions({e.id: "Everest" for e in web[:2]}, web, metric="triviaqa")
    assert (result["total"], result["missing"]) == (3, 1)
    assert result["average"]["exact_match"] == pytest.approx(200 / 3)


def test_evaluate_predictions_file(tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(
        json.dumps({"english-6345678901234567890-0": "Kenya", "arabic-2387335860751143628-1": "القاهرة"})
    )
    result = evaluate_predictions_file(predictions, "tydiqa", FIXTURES / "tydiqa")
    assert result["dataset"] == "tydiqa" and result["split"] == "dev" and result["metric"] == "squad"
    assert result["per_language"]["en"] == {"exact_match": 50.0, "f1": 50.0, "total": 2, "missing": 1}
    assert result["per_language"]["ar"]["exact_match"] == 100.0
    assert result["per_language"]["fi"]["missing"] == 1
    assert result["average"]["exact_match"] == pytest.approx(50.0)  # (50 + 100 + 0) / 3
    predictions.write_text(json.dumps({"sq-001": "France"}))
    alone = evaluate_predictions_file(predictions, str(FIXTURES / "squad" / "dev-v1.1.json"))
    assert alone["dataset"] == "json" and alone["average"]["exact_match"] == pytest.approx(20.0)
    with pytest.raises(LongifyError, match=r"--dataset squad: give the benchmark's files too"):
        evaluate_predictions_file(predictions, "squad")
    predictions.write_text("[1, 2]")
    with pytest.raises(LongifyError, match=r"predictions.json: expected a JSON object mapping question id"):
        evaluate_predictions_file(predictions, "tydiqa", FIXTURES / "tydiqa")


# --- the real XQuAD files ------------------------------------------------------------------------------

needs_xquad = pytest.mark.skipif(not XQUAD.is_dir(), reason="../shared/data/xquad not present")


def _official_squad_normalize(s: str) -> str:
    """evaluate-v1.1.py's normalize_answer, transcribed as the independent reference."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}.union(
    string.punctuation
)


def _official_mlqa_tokens(s: str, lang: str) -> list[str]:
    """mlqa_evaluation_v1.py's normalize_answer(...).split() for the XQuAD languages here."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    articles = {"en": r"\b(a|an|the)\b", "es": r"\b(un|una|unos|unas|el|la|los|las)\b", "ar": "\\sال^|ال"}
    articles["de"] = r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"
    if lang in articles:
        s = re.sub(articles[lang], " ", s)
    if lang != "zh":
        return s.split()
    out, temp = [], ""
    for ch in s:
        if re.search(r"[\u4e00-\u9fa5]", ch) or ch in _PUNCT:
            out.extend(temp.split())
            temp = ""
            out.append(ch)
        else:
            temp += ch
    return out + temp.split()


def _official_evaluate(examples, predictions, tokens) -> tuple[float, float]:
    em = f1 = 0.0
    for ex in examples:
        if ex.id not in predictions:
            continue
        best_em = best_f1 = 0.0
        for gold in ex.gold_texts():
            p, g = tokens(predictions[ex.id]), tokens(gold)
            best_em = max(best_em, float(p == g))
            same = sum((Counter(p) & Counter(g)).values())
            if same:
                prec, rec = same / len(p), same / len(g)
                best_f1 = max(best_f1, 2 * prec * rec / (prec + rec))
        em, f1 = em + best_em, f1 + best_f1
    return 100 * em / len(examples), 100 * f1 / len(examples)


PERTURBATIONS = {
    "gold": lambda t: t,
    "first_word": lambda t: t.split()[0],
    "extra_word": lambda t: t + " xyzzy",
    "drop_last_char": lambda t: t[:-1],
    "first_half": lambda t: t[: max(1, len(t) // 2)],
}


@needs_xquad
def test_xquad_gold_answers_score_100_for_every_language():
    examples = list(load_examples("xquad", XQUAD))
    languages = sorted({e.language for e in examples})
    assert len(languages) >= 1 and all(
        sum(e.language == lang for e in examples) == 1190 for lang in languages
    )
    gold = {lang: {e.id: e.answers[0].text for e in examples if e.language == lang} for lang in languages}
    for metric in ("squad", "mlqa"):
        result = score_predictions(gold, examples, metric=metric)
        for lang in languages:
            assert result["per_language"][lang] == {
                "exact_match": 100.0,
                "f1": 100.0,
                "total": 1190,
                "missing": 0,
            }


@needs_xquad
@pytest.mark.parametrize("perturbation", sorted(PERTURBATIONS))
def test_xquad_perturbations_match_the_official_formulas(perturbation):
    change = PERTURBATIONS[perturbation]
    examples = list(load_examples("xquad", XQUAD))
    languages = sorted({e.language for e in examples})
    # every 7th question unanswered, to exercise the missing-prediction path
    preds = {
        lang: {
            e.id: change(e.answers[0].text) for i, e in enumerate(examples) if e.language == lang and i % 7
        }
        for lang in languages
    }
    squad = score_predictions(preds, examples, metric="squad")
    mlqa = score_predictions(preds, examples, metric="mlqa")
    for lang in languages:
        subset = [e for e in examples if e.language == lang]
        em, f1 = _official_evaluate(subset, preds[lang], lambda s: _official_squad_normalize(s).split())
        assert squad["per_language"][lang]["exact_match"] == pytest.approx(em, abs=1e-9)
        assert squad["per_language"][lang]["f1"] == pytest.approx(f1, abs=1e-9)
        em, f1 = _official_evaluate(subset, preds[lang], lambda s, lang=lang: _official_mlqa_tokens(s, lang))
        assert mlqa["per_language"][lang]["exact_match"] == pytest.approx(em, abs=1e-9)
        assert mlqa["per_language"][lang]["f1"] == pytest.approx(f1, abs=1e-9)
    if perturbation == "extra_word" and "en" in languages:
        assert squad["per_language"]["en"]["exact_match"] == 0.0
