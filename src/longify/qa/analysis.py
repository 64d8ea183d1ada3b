"""Where long context helps: EM/F1 by the answer's token position and by the context's length in tokens.

Positions count tokens of the full tokenised context (no question, no special tokens); a bucket of width
512 is labelled ``0-511``, ``512-1023``, ... so a model that only sees 512 tokens at once shows its drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from longify.qa.metrics import get_metric, score_one
from longify.qa.tasks.example import QAExample


def bucket_label(value: int, width: int) -> str:
    low = (value // width) * width
    return f"{low}-{low + width - 1}"


def token_positions(
    examples: Sequence[QAExample], tokenizer: PreTrainedTokenizerBase
) -> list[tuple[int | None, int]]:
    """(token index of the first gold answer's first token or None, context length in tokens) per example.

    Whole contexts are tokenised on purpose (positions, not model inputs): transformers' warning that a
    sequence is longer than the model's maximum is silenced for this call only."""
    key = "sequence-length-is-longer-than-the-specified-maximum"
    warned = getattr(tokenizer, "deprecation_warnings", {})
    before = warned.get(key)
    warned[key] = True
    try:
        enc = tokenizer([e.context for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    finally:
        if before is None:
            warned.pop(key, None)
        else:
            warned[key] = before
    out: list[tuple[int | None, int]] = []
    for example, offsets in zip(examples, enc["offset_mapping"], strict=True):
        position = None
        if example.answers:
            start = example.answers[0].answer_start
            position = next((i for i, (_, end) in enumerate(offsets) if end > start), None)
        out.append((position, len(offsets)))
    return out


def _summary(rows: list[tuple[float, float]]) -> dict[str, float | int]:
    n = len(rows)
    return {
        "exact_match": 100.0 * sum(r[0] for r in rows) / n,
        "f1": 100.0 * sum(r[1] for r in rows) / n,
        "count": n,
    }


def _sort_key(label: str) -> int:
    return int(label.split("-")[0])


def bucket_scores(
    examples: Sequence[QAExample],
    predictions: Mapping[int, str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    metric: str = "squad",
    lang: str | None = None,
    bucket_width: int = 512,
) -> dict[str, Any]:
    """EM/F1 (percent) and counts per answer-position bucket and per context-length bucket.

    ``predictions`` is keyed by example index; each example is scored on its own (documents of one
    TriviaQA question separately), against its gold texts.
    """
    scorer = get_metric(metric)
    by_position: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_length: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if not examples:
        return {"bucket_width": bucket_width, "answer_position": {}, "context_length": {}}
    for index, (example, (position, length)) in enumerate(
        zip(examples, token_positions(examples, tokenizer), strict=True)
    ):
        scores = score_one(scorer, predictions.get(index, ""), example.gold_texts(), lang or example.language)
        row = (scores["exact_match"], scores["f1"])
        if position is not None:
            by_position[bucket_label(position, bucket_width)].append(row)
        by_length[bucket_label(length, bucket_width)].append(row)
    return {
        "bucket_width": bucket_width,
        "answer_position": {k: _summary(by_position[k]) for k in sorted(by_position, key=_sort_key)},
        "context_length": {k: _summary(by_length[k]) for k in sorted(by_length, key=_sort_key)},
    }
