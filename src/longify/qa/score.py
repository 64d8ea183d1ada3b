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
from longify.qa.tasks import (
    ALL_SUBSETS,
    TASKS,
    AverageRule,
    data_flag_options,
    get_task,
    load_examples,
    load_gold,
)
from longify.qa.tasks.example import GoldUnit, QAExample
from longify.qa.tasks.squadformat import read_json

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


def gold_units(examples: Iterable[QAExample]) -> list[GoldUnit]:
    """One scoring unit per example, or per ``group_id`` (its documents as members), in example order."""
    groups: dict[tuple[str, str], list[QAExample]] = defaultdict(list)
    for example in examples:
        groups[subset_of(example), example.group_id or example.id].append(example)
    return [
        GoldUnit(
            key,
            subset,
            tuple(sorted({g for e in group for g in e.gold_texts()})),
            group[0].language,
            tuple(e.id for e in group),
        )
        for (subset, key), group in groups.items()
    ]


def _split_by_subset(
    predictions: Mapping[str, Any], subsets: set[str]
) -> dict[str, Mapping[str, Any]] | None:
    """Per-language predictions ``{lang: {id: text}}`` when the file is shaped that way, else None.

    Languages or pairs of the file that are not being evaluated are allowed (and ignored).
    """
    nested = (
        predictions
        and any(k in subsets for k in predictions)
        and all(isinstance(v, dict) and "text" not in v for v in predictions.values())
    )
    return dict(predictions) if nested else None


def _pick(
    preds: Mapping[str, Any], unit: GoldUnit, used: set[str], source: str
) -> tuple[str | None, str | None]:
    """(answer text or None, the official key used or None): the unit's own key, else its members'."""
    if unit.key in preds:
        used.add(unit.key)
        return as_candidate(preds[unit.key], f"{source}: question {unit.key}")[0], unit.key
    found = [(m, preds[m]) for m in unit.members if m in preds]
    used.update(m for m, _ in found)
    cands = [as_candidate(v, f"{source}: question {m}") for m, v in found]
    return (aggregate_group(cands) if cands else None), None


def _average(per_language: Mapping[str, Mapping[str, float]], subsets: Sequence[str]) -> dict[str, float]:
    return {k: sum(per_language[s][k] for s in subsets) / len(subsets) for k in ("exact_match", "f1")}


def score_predictions(
    predictions: Mapping[str, Any],
    examples: Iterable[QAExample] = (),
    *,
    units: Sequence[GoldUnit] | None = None,
    metric: str = "squad",
    lang: str | None = None,
    source: str = "predictions",
    average: AverageRule = ALL_SUBSETS,
    question_scores: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """EM/F1 (percent) per language, the headline ``average`` (per ``average``'s rule) and ``average_all``.

    ``predictions``: id -> text (or ``{"text", "score"}``), or language -> {id -> text} when ids repeat
    across languages (XQuAD, MLQA). ``units``: what is scored (the official key set, e.g. from
    ``load_gold``); default one unit per example or ``group_id``. A prediction keyed by the unit's key is used
    as is; else its members' (documents') predictions are aggregated (highest score, else majority).
    ``lang`` forces the metric's language (``--metric mlqa --lang L``); by default each unit's own.
    ``question_scores``, when given, gets one ``{"id", "language", "exact_match", "f1"}`` per scored unit
    (percent, 0 for a missing answer): the values the per-language scores are the means of.
    """
    scorer = get_metric(metric)
    units = list(units) if units is not None else gold_units(examples)
    if not units:
        raise LongifyError(f"{source}: the dataset has no examples to score")
    subsets = {u.subset for u in units}
    nested = _split_by_subset(predictions, subsets)
    if nested is None and len(subsets) > 1:
        keys = Counter(u.key for u in units)
        repeated = next((key for key, n in keys.items() if n > 1), None)
        if repeated is not None:
            raise LongifyError(
                f"{source}: question {repeated}: id repeats across languages {sorted(subsets)}; "
                "give predictions per language ({lang: {id: text}}) or choose one language"
            )
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])  # em, f1, total, missing
    used: dict[str, set[str]] = defaultdict(set)
    by_member = 0
    for unit in units:
        pool = unit.subset if nested is not None else ""
        preds = nested.get(unit.subset, {}) if nested is not None else predictions
        text, key = _pick(preds, unit, used[pool], source)
        stats = sums[unit.subset]
        stats[2] += 1
        if text is None:
            stats[3] += 1
            if question_scores is not None:
                question_scores.append(
                    {"id": unit.key, "language": unit.subset, "exact_match": 0.0, "f1": 0.0}
                )
            continue
        by_member += key is None and unit.members != (unit.key,)
        scores = score_one(scorer, text, unit.golds, lang or unit.lang)
        stats[0] += scores["exact_match"]
        stats[1] += scores["f1"]
        if question_scores is not None:
            question_scores.append(
                {
                    "id": unit.key,
                    "language": unit.subset,
                    "exact_match": 100.0 * scores["exact_match"],
                    "f1": 100.0 * scores["f1"],
                }
            )
    pools = nested if nested is not None else {"": predictions}
    given = sum(len(v) for v in pools.values())
    n_used = sum(len(v) for v in used.values())
    if not given:
        raise LongifyError(
            f"{source}: holds no predictions (expected an object of question id -> answer text)"
        )
    if not n_used:
        example_id = next((k for pool in pools.values() for k in pool), None)
        raise LongifyError(
            f"{source}: none of its {given} prediction ids is a question of the dataset (e.g. {example_id!r})"
        )
    if by_member:
        logger.warning(
            "%s: %d questions scored from per-document predictions (not the official keys %s...)",
            source,
            by_member,
            units[0].key,
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
    averaged = average.subsets(list(per_language))
    description = average.description
    if any(subset in average.exclude for subset in averaged):  # only excluded languages were evaluated
        description = f"{description}; only {', '.join(averaged)} evaluated: their mean"
    return {
        "metric": metric,
        "lang": lang,
        "per_language": per_language,
        "average": _average(per_language, averaged),
        "average_definition": description,
        "average_languages": averaged,
        **official_coverage(average, averaged),
        "average_all": _average(per_language, list(per_language)),
        "total": sum(s["total"] for s in per_language.values()),
        "missing": missing,
        "extra": given - n_used,
    }


def official_coverage(average: AverageRule, averaged: Sequence[str]) -> dict[str, Any]:
    """For a benchmark with an official language set: ``average_complete`` (the headline average is taken
    over exactly that set, so it compares with the published number) and ``average_missing``; one warning
    when it is not. Nothing for other tasks."""
    if not average.official:
        return {}
    missing = average.missing(averaged)
    beyond = [s for s in averaged if s not in average.official]
    if missing or beyond:
        unit = "language pairs" if any("-" in s for s in average.official) else "languages"
        logger.warning(
            "%s average over %d of its %d official %s%s%s: not comparable with the published %s average",
            average.benchmark,
            len(averaged) - len(beyond),
            len(average.official),
            unit,
            f" (missing {', '.join(missing)})" if missing else "",
            f" and over {', '.join(beyond)}, which it does not include" if beyond else "",
            average.benchmark,
        )
    return {"average_complete": not missing and not beyond, "average_missing": missing}


def official_predictions(
    examples: Sequence[QAExample], candidates: Mapping[int, Any], units: Sequence[GoldUnit]
) -> dict[str, Any]:
    """Predictions keyed as the official script reads them: one answer per unit key (TriviaQA Wikipedia:
    ``QuestionId``, the highest-scored of its documents' answers), ``{subset: {key: text}}`` when keys repeat
    across subsets. ``candidates``: example index -> text or ``{"text", "score"}``. Units without any
    example (empty evidence) are left out, as a missing answer."""
    by_id = {(subset_of(e), e.id): candidates[i] for i, e in enumerate(examples) if i in candidates}
    keyed: dict[tuple[str, str], str] = {}
    for unit in units:
        cands = [as_candidate(by_id[unit.subset, m], m) for m in unit.members if (unit.subset, m) in by_id]
        if cands:
            keyed[unit.subset, unit.key] = aggregate_group(cands)
    keys = [key for _, key in keyed]
    if len(set(keys)) == len(keys):
        return {key: text for (_, key), text in keyed.items()}
    nested: dict[str, dict[str, str]] = defaultdict(dict)
    for (subset, key), text in keyed.items():
        nested[subset][key] = text
    return dict(nested)


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
    units = load_gold(dataset, path, split=split, languages=languages, **options)  # no evidence needed
    if units is None:
        units = gold_units(load_examples(dataset, path, split=split, languages=languages, **options))
    result = score_predictions(
        read_predictions(predictions_file),
        units=units,
        metric=metric or task.metric,
        lang=lang,
        source=str(predictions_file),
        average=task.average,
    )
    return {
        "dataset": dataset,
        "data": str(path),
        "split": split or task.split,
        "predictions": str(predictions_file),
        **result,
    }


def eval_scoring(data: Any, examples: Sequence[QAExample]) -> tuple[list[GoldUnit], AverageRule]:
    """What a model's evaluation on ``examples`` (read from ``data.predict_file``) is scored on, and how
    its headline average is taken: the task's official key set when it has one and the whole split is
    evaluated (TriviaQA: documents with empty evidence count), else one unit per example or group."""
    name = getattr(data, "dataset", None)
    task = TASKS.get(name) if name else None
    if task is None:
        return gold_units(examples), ALL_SUBSETS
    whole = not getattr(data, "max_eval_samples", None) and getattr(data, "concat_contexts", 0) <= 1
    units = None
    if whole and data.predict_file is not None:
        options = data_flag_options(data, name)
        units = load_gold(name, data.predict_file, split=data.eval_split, languages=data.languages, **options)
    return (units if units is not None else gold_units(examples)), task.average
