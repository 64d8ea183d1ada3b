"""Score a predictions JSON (question id -> answer text) against a benchmark, without a model.

This is what ``longify qa evaluate --predictions FILE --dataset NAME`` calls. The result has one entry per
language (MLQA cross-language pairs as ``CONTEXT-QUESTION``, e.g. ``en-de``) and their unweighted average,
in percent, like the official scripts. Unanswered questions score 0 and are counted as ``missing``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.metrics import get_metric, score_one
from longify.qa.tasks import TASKS, get_task, load_examples
from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squad import read_json

logger = logging.getLogger(__name__)

Candidate = tuple[str, float | None]


def subset_of(example: QAExample) -> str:
    """The breakdown key: the language, or ``context-question`` for a cross-language MLQA pair."""
    q = example.question_language
    return example.language if q is None or q == example.language else f"{example.language}-{q}"


def as_candidate(value: Any, where: str) -> Candidate:
    """A prediction value: text, ``{"text", "score"|"probability"}``, or an n-best list (its first entry)."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        score = value.get("score", value.get("probability"))
        return value["text"], float(score) if isinstance(score, int | float) else None
    raise LongifyError(f"{where}: expected answer text, got {type(value).__name__}")


def aggregate_group(candidates: Sequence[Candidate]) -> str:
    """One answer for a question seen through several documents: the highest-scored one when all have
    scores, else the most frequent text (ties: the first document's)."""
    if not candidates:
        return ""
    scored = [(score, text) for text, score in candidates if score is not None]
    if len(scored) == len(candidates):
        return max(scored, key=lambda c: c[0])[1]
    counts = Counter(text.strip() for text, _ in candidates)
    return max(candidates, key=lambda c: counts[c[0].strip()])[0]


def read_predictions(path: str | Path) -> dict[str, Any]:
    """The predictions JSON object (id -> text, or language -> {id -> text})."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise LongifyError(f"{path}: expected a JSON object mapping question id to answer text")
    return data


def _split_by_subset(
    predictions: Mapping[str, Any], subsets: set[str]
) -> dict[str, Mapping[str, Any]] | None:
    """Per-language predictions ``{lang: {id: text}}`` when the file is shaped that way, else None."""
    nested = predictions and all(
        k in subsets and isinstance(v, dict) and "text" not in v for k, v in predictions.items()
    )
    return dict(predictions) if nested else None


def score_predictions(
    predictions: Mapping[str, Any],
    examples: Iterable[QAExample],
    *,
    metric: str = "squad",
    lang: str | None = None,
    source: str = "predictions",
) -> dict[str, Any]:
    """EM/F1 (percent) per language and their average.

    ``predictions``: id -> text (or ``{"text", "score"}``), or language -> {id -> text} when ids repeat
    across languages (XQuAD, MLQA). ``lang`` forces the metric's language (``--metric mlqa --lang L``);
    by default each example's context language is used. Examples sharing ``group_id`` are one question:
    a prediction keyed by the group id is used as is, else the documents' predictions are aggregated.
    """
    scorer = get_metric(metric)
    units: dict[tuple[str, str], list[QAExample]] = defaultdict(list)
    for example in examples:
        units[subset_of(example), example.group_id or example.id].append(example)
    if not units:
        raise LongifyError(f"{source}: the dataset has no examples to score")
    subsets = {subset for subset, _ in units}
    nested = _split_by_subset(predictions, subsets)
    if nested is None and len(subsets) > 1:
        ids = Counter(key for _, key in units)
        repeated = next((key for key, n in ids.items() if n > 1), None)
        if repeated is not None:
            raise LongifyError(
                f"{source}: question {repeated}: id repeats across languages {sorted(subsets)}; "
                "give predictions per language ({lang: {id: text}}) or choose one language"
            )
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])  # em, f1, total, missing
    used: set[tuple[str, str]] = set()
    for (subset, key), group in units.items():
        preds = nested.get(subset, {}) if nested is not None else predictions
        pool = subset if nested is not None else ""
        if key in preds:
            text, _ = as_candidate(preds[key], f"{source}: question {key}")
            used.add((pool, key))
        else:
            found = [(e.id, preds[e.id]) for e in group if e.id in preds]
            used.update((pool, qid) for qid, _ in found)
            cands = [as_candidate(v, f"{source}: question {qid}") for qid, v in found]
            text = aggregate_group(cands) if cands else None
        golds = sorted({g for e in group for g in e.gold_texts()})
        stats = sums[subset]
        stats[2] += 1
        if text is None:
            stats[3] += 1
            continue
        scores = score_one(scorer, text, golds, lang or group[0].language)
        stats[0] += scores["exact_match"]
        stats[1] += scores["f1"]
    given = sum(len(v) for v in nested.values()) if nested is not None else len(predictions)
    if not used:
        pools = list(nested.values()) if nested is not None else [predictions]
        example_id = next((k for pool in pools for k in pool), None)
        raise LongifyError(
            f"{source}: none of its {given} prediction ids is a question of the dataset (e.g. {example_id!r})"
        )
    per_language = {
        subset: {
            "exact_match": 100.0 * em / total,
            "f1": 100.0 * f1 / total,
            "total": int(total),
            "missing": int(missing),
        }
        for subset, (em, f1, total, missing) in sorted(sums.items())
    }
    missing = sum(s["missing"] for s in per_language.values())
    if missing:
        logger.warning("%s: %d questions have no prediction and score 0", source, missing)
    return {
        "metric": metric,
        "lang": lang,
        "per_language": per_language,
        "average": {
            k: sum(s[k] for s in per_language.values()) / len(per_language) for k in ("exact_match", "f1")
        },
        "total": sum(s["total"] for s in per_language.values()),
        "missing": missing,
        "extra": given - len(used),
    }


def resolve_dataset(dataset: str, data_path: str | Path | None) -> tuple[str, Path]:
    """(task name, path): ``--dataset squad --data PATH``, or ``--dataset FILE.json`` alone (the ``json`` task)."""
    if data_path is None:
        if dataset not in TASKS and Path(dataset).suffix in (".json", ".jsonl") and Path(dataset).is_file():
            return "json", Path(dataset)
        raise LongifyError(
            f"--dataset {dataset}: give the benchmark's files too, or a SQuAD-format .json/.jsonl file"
        )
    return dataset, Path(data_path)


def evaluate_predictions_file(
    predictions_file: str | Path,
    dataset: str,
    data_path: str | Path | None = None,
    *,
    split: str | None = None,
    languages: Sequence[str] | None = None,
    metric: str | None = None,
    lang: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``longify qa evaluate``: load ``dataset`` from ``data_path`` and score ``predictions_file`` on it.

    ``dataset`` is a task name with ``data_path`` its files, or a SQuAD-format file alone (like the official
    ``evaluate-v1.1.py DATASET PREDICTIONS``). ``metric`` defaults to the one the benchmark's official
    evaluation uses (``get_task(dataset).metric``); ``options`` go to the loader (``pairs=``, ``domain=``...).
    """
    dataset, path = resolve_dataset(dataset, data_path)
    task = get_task(dataset)
    examples = load_examples(dataset, path, split=split, languages=languages, **options)
    result = score_predictions(
        read_predictions(predictions_file),
        examples,
        metric=metric or task.metric,
        lang=lang,
        source=str(predictions_file),
    )
    return {
        "dataset": dataset,
        "data": str(path),
        "split": split or task.split,
        "predictions": str(predictions_file),
        **result,
    }
