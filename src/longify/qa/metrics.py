"""Extractive-QA metrics, each as its official script computes it.

- ``squad``: SQuAD v1.1 ``evaluate-v1.1.py`` (ASCII punctuation removed, English articles, whitespace tokens).
- ``mlqa``: MLQA ``mlqa_evaluation_v1.py`` (all Unicode ``P*`` punctuation removed, per-language articles,
  whitespace tokens except Chinese "mixed segmentation": each CJK character a token). For languages the
  script does not know (it raises), longify uses no article list and whitespace tokens.
- ``triviaqa``: ``triviaqa_evaluation.py`` (underscores and punctuation, plus ‘ ’ ´ `, become spaces).

EM and F1 per pair are in [0, 1]; ``max_over_gold`` takes the best gold answer; callers report percentages.
A prediction with no token in common scores F1 0, even when both normalise to empty (as the scripts do).
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from longify.errors import LongifyError

# --- SQuAD v1.1 -----------------------------------------------------------------------------------------

_SQUAD_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """Lower, drop ASCII punctuation, drop a/an/the, collapse whitespace (evaluate-v1.1.py)."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_EN_ARTICLES.sub(" ", text).split())


def token_f1(prediction_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1 of the official scripts (0 when nothing is shared)."""
    same = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, gold: str, lang: str | None = None) -> float:
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_f1(prediction: str, gold: str, lang: str | None = None) -> float:
    return token_f1(squad_normalize(prediction).split(), squad_normalize(gold).split())


# --- MLQA -----------------------------------------------------------------------------------------------


@cache
def _unicode_punct() -> frozenset[str]:
    chars = (chr(i) for i in range(sys.maxunicode))
    return frozenset(c for c in chars if unicodedata.category(c).startswith("P")) | _SQUAD_PUNCT


MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "hi": None,
    "zh": None,
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def mixed_segmentation(text: str) -> list[str]:
    """MLQA's Chinese tokens: every CJK (U+4E00..U+9FA5) or punctuation character alone, other runs split on spaces."""
    punct, tokens, run = _unicode_punct(), [], ""
    for char in text:
        if _CJK.search(char) or char in punct:
            tokens.extend(run.split())
            run = ""
            tokens.append(char)
        else:
            run += char
    tokens.extend(run.split())
    return tokens


_SEGMENTERS: dict[str, Callable[[str], list[str]]] = {"zh": mixed_segmentation}


def mlqa_normalize(text: str, lang: str) -> str:
    """Lower, drop Unicode punctuation, drop ``lang``'s articles, re-join its tokens with single spaces."""
    punct = _unicode_punct()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = MLQA_ARTICLES.get(lang)
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _SEGMENTERS.get(lang, str.split)(text)
    return " ".join(t for t in tokens if t.strip())


def mlqa_exact_match(prediction: str, gold: str, lang: str | None = None) -> float:
    lang = lang or "en"
    return float(mlqa_normalize(prediction, lang) == mlqa_normalize(gold, lang))


def mlqa_f1(prediction: str, gold: str, lang: str | None = None) -> float:
    lang = lang or "en"
    return token_f1(mlqa_normalize(prediction, lang).split(), mlqa_normalize(gold, lang).split())


# --- TriviaQA -------------------------------------------------------------------------------------------

_TRIVIAQA_PUNCT = frozenset(string.punctuation + "‘’´`")


def triviaqa_normalize(text: str) -> str:
    """Underscores to spaces, lower, punctuation to spaces, drop a/an/the, collapse whitespace."""
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _TRIVIAQA_PUNCT else ch for ch in text)
    return " ".join(_EN_ARTICLES.sub(" ", text).split())


def triviaqa_exact_match(prediction: str, gold: str, lang: str | None = None) -> float:
    return float(triviaqa_normalize(prediction) == triviaqa_normalize(gold))


def triviaqa_f1(prediction: str, gold: str, lang: str | None = None) -> float:
    return token_f1(triviaqa_normalize(prediction).split(), triviaqa_normalize(gold).split())


# --- registry -------------------------------------------------------------------------------------------

PairScore = Callable[[str, str, str | None], float]


@dataclass(frozen=True)
class Metric:
    """A metric's per-pair exact match and F1, both ``(prediction, gold, lang) -> [0, 1]``."""

    name: str
    exact_match: PairScore
    f1: PairScore


METRICS: dict[str, Metric] = {
    "squad": Metric("squad", squad_exact_match, squad_f1),
    "mlqa": Metric("mlqa", mlqa_exact_match, mlqa_f1),
    "triviaqa": Metric("triviaqa", triviaqa_exact_match, triviaqa_f1),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise LongifyError(f"--metric {name}: expected one of {sorted(METRICS)}")
    return METRICS[name]


def max_over_gold(score: PairScore, prediction: str, golds: Sequence[str], lang: str | None = None) -> float:
    """The best score of ``prediction`` against any gold answer (0 when there is none)."""
    return max((score(prediction, gold, lang) for gold in golds), default=0.0)


def score_one(
    metric: str | Metric, prediction: str, golds: Sequence[str], lang: str | None = None
) -> dict[str, float]:
    """EM and F1 in [0, 1] for one prediction against its gold answers."""
    m = get_metric(metric) if isinstance(metric, str) else metric
    return {
        "exact_match": max_over_gold(m.exact_match, prediction, golds, lang),
        "f1": max_over_gold(m.f1, prediction, golds, lang),
    }
