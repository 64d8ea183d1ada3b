"""Start/end logits of every window -> the n best answer spans of each example, as text of its context.

Candidates come from all windows of an example (a span seen by two overlapping windows keeps its best
score). Text is cut from the ORIGINAL context by character offsets, so lower-casing, SentencePiece's ``▁``
and scripts without spaces cannot garble it; surrounding whitespace (a lone ``▁`` piece, leading spaces
in byte-level offsets) is stripped and the offsets moved with it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from longify.qa.tasks.example import QAExample

NBest = list[dict[str, Any]]


def strip_span(context: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved inwards past whitespace at either side (empty when all whitespace)."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def window_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[tuple[float, int, int]]:
    """``(score, start_char, end_char)`` of the valid spans among the window's top starts x top ends."""
    length = min(len(offsets), len(start_logits))
    starts = np.argsort(start_logits[:length])[::-1][:n_best_size]
    ends = np.argsort(end_logits[:length])[::-1][:n_best_size]
    out = []
    for s in starts:
        if offsets[s] is None:
            continue
        for e in ends:
            if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            out.append((float(start_logits[s] + end_logits[e]), offsets[s][0], offsets[e][1]))
    return out


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [x / total for x in exp]


def best_spans(context: str, candidates: Sequence[tuple[float, int, int]], n_best_size: int = 20) -> NBest:
    """The ``n_best_size`` best distinct non-empty spans, with text, score, probability and char offsets."""
    best: dict[tuple[int, int], float] = {}
    for score, start, end in candidates:
        span = strip_span(context, start, end)
        if span[0] < span[1] and score > best.get(span, -math.inf):
            best[span] = score
    ranked = sorted(best.items(), key=lambda item: -item[1])[:n_best_size]
    probs = _softmax([score for _, score in ranked])
    return [
        {"text": context[s:e], "score": score, "probability": p, "start": s, "end": e}
        for ((s, e), score), p in zip(ranked, probs, strict=True)
    ]


def decode(
    examples: Sequence[QAExample],
    features: Sequence[Mapping[str, Any]],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[int, str], dict[int, NBest]]:
    """Predictions and n-best lists keyed by example index (``feature["example_index"]``).

    ``start_logits[i]`` / ``end_logits[i]`` belong to ``features[i]`` (longer arrays, padded, are fine).
    An example without any valid span gets the empty answer.
    """
    by_example: dict[int, list[tuple[float, int, int]]] = defaultdict(list)
    for feature, start, end in zip(features, start_logits, end_logits, strict=True):
        by_example[feature["example_index"]].extend(
            window_candidates(
                np.asarray(start),
                np.asarray(end),
                feature["offset_mapping"],
                n_best_size=n_best_size,
                max_answer_length=max_answer_length,
            )
        )
    predictions: dict[int, str] = {}
    nbest: dict[int, NBest] = {}
    for index, example in enumerate(examples):
        spans = best_spans(example.context, by_example.get(index, []), n_best_size)
        if not spans:
            spans = [{"text": "", "score": 0.0, "probability": 1.0, "start": 0, "end": 0}]
        predictions[index] = spans[0]["text"]
        nbest[index] = spans
    return predictions, nbest


def keyed_by_id(examples: Sequence[QAExample], values: Mapping[int, Any], subset_of: Any) -> dict[str, Any]:
    """``{id: value}``, or ``{language: {id: value}}`` when ids repeat across languages (XQuAD, MLQA)."""
    ids = [e.id for e in examples]
    if len(set(ids)) == len(ids):
        return {e.id: values[i] for i, e in enumerate(examples)}
    nested: dict[str, dict[str, Any]] = defaultdict(dict)
    for i, example in enumerate(examples):
        nested[subset_of(example)][example.id] = values[i]
    return dict(nested)
