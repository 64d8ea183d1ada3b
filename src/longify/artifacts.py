"""The files longify's stages exchange: the names of the files in a run folder and a study folder, and the
schema of each file one stage writes and another reads (``results.json``, ``question_scores.jsonl``,
``results.jsonl``, ``pretrain_curves.jsonl``, ``costs.jsonl``, ``pretrain_metrics.json``), with one reader
and one writer each. A reader refuses a malformed file in one line naming the file (and line) and the
field; extra fields are allowed. Imports only the file I/O layer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.fileio import write_json_atomic, write_jsonl_atomic
from longify.textfiles import path_kind, read_utf8, utf8_lines

# a run folder (convert, pretrain, qa train, qa evaluate)
RUN_FILE = "longify_run.json"  # the run record: arguments, versions and ``defining_args`` (runargs)
CONVERSION_FILE = "conversion.json"  # longify convert: what was converted, how, and how well it matched
PRETRAIN_METRICS_FILE = "pretrain_metrics.json"  # longify pretrain: its evaluations and facts
RESULTS_FILE = "results.json"  # qa train / qa evaluate: the scores, arguments and versions
PREDICTIONS_FILE = "predictions.json"  # question id -> answer text
NBEST_FILE = "nbest_predictions.json"
QUESTION_SCORES_FILE = "question_scores.jsonl"  # one line per scored question
NULL_ODDS_FILE = "null_odds.json"  # the seed's run_squad wrote one (SQuAD 2.0); removed with a run
MODEL_METRICS_FILE = "metrics.json"  # a clean exported model's metrics
TRAINER_STATE_FILE = "trainer_state.json"  # the HF Trainer's, in each checkpoint-N
QA_EVAL_FILES = (RESULTS_FILE, PREDICTIONS_FILE, NBEST_FILE, QUESTION_SCORES_FILE)  # one evaluation's set

# a study folder
STUDY_RESULTS_FILE = "results.jsonl"  # one row per model x eval set x language x seed
PRETRAIN_CURVES_FILE = "pretrain_curves.jsonl"  # one row per evaluation of each pretraining run
STUDY_COSTS_FILE = "costs.jsonl"  # one row per training run (pretrain, qa train): what it cost
AVERAGE = "average"  # the language of a benchmark's official headline row in results.jsonl


def _str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _percent(v: Any) -> bool:
    return finite_number(v) and 0.0 <= v <= 100.0


def _or_null(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


Check = tuple[Callable[[Any], bool], str]  # (test, what it expects, for the message)
STR: Check = (_str, "a non-empty string")
OPT_STR: Check = (_or_null(_str), "a string or null")
INT: Check = (_int, "an integer")
OPT_INT: Check = (_or_null(_int), "an integer or null")
PERCENT: Check = (_percent, "a number from 0 to 100 (a score in percent)")
FRACTION_OR_PERCENT: Check = (_percent, "a number from 0 to 100 (a fraction in [0, 1] or a percent)")
OPT_NUMBER: Check = (
    _or_null(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "a number or null",
)

# the fields of each JSON-lines file, in the order they are written
RESULT_FIELDS: dict[str, Check] = {
    "model": STR, "source_model": OPT_STR, "eval_set": STR, "task": STR, "language": STR, "seed": INT,
    "exact_match": PERCENT, "f1": PERCENT, "total": OPT_INT, "job_id": STR, "results_path": OPT_STR,
    "predictions_path": OPT_STR, "question_scores_path": OPT_STR,
}  # fmt: skip
RESULT_KEYS = tuple(RESULT_FIELDS)
# written only by a study that names targets (its rows carry them all): a study that does not keeps the
# bytes it always had. ``short`` for a model no conversion lengthened, else its target (longformer, ...)
RESULT_OPTIONAL: dict[str, Check] = {"target": STR}
QUESTION_FIELDS: dict[str, Check] = {
    "id": STR, "language": STR, "exact_match": FRACTION_OR_PERCENT, "f1": FRACTION_OR_PERCENT,
}  # fmt: skip
CURVE_FIELDS: dict[str, Check] = {
    "model": STR, "step": INT, "loss": OPT_NUMBER, "bits_per_token": OPT_NUMBER,
    "pseudo_bits_per_char": OPT_NUMBER, "job_id": OPT_STR,
}  # fmt: skip
# the ``cost`` object of a training run's pretrain_metrics.json / results.json (``training_run``); a key it
# lacks is unknown (null)
RUN_COST_FIELDS: dict[str, Check] = {
    "train_seconds": OPT_NUMBER, "steps": OPT_INT, "seconds_per_step": OPT_NUMBER, "train_tokens": OPT_INT,
    "train_tokens_per_second": OPT_NUMBER, "peak_memory_mb": OPT_NUMBER, "memory": OPT_STR, "device": OPT_STR,
}  # fmt: skip
COST_FIELDS: dict[str, Check] = {
    "model": STR, "stage": STR, "seed": OPT_INT, "job_id": STR, **RUN_COST_FIELDS,
}  # fmt: skip


def need_file(path: Path, hint: str) -> None:
    """Refuse, in one line, a path that is not a file (``hint``: where its name came from)."""
    kind = path_kind(path)
    if kind is None:
        raise LongifyError(f"{path}: file not found" + (f" ({hint})" if hint else ""))
    if kind != "file":
        raise LongifyError(f"{path}: is a {'directory' if kind == 'dir' else 'special file'}, not a file")


def _check(where: str, record: dict[str, Any], fields: dict[str, Check], what: str, prefix: str = "") -> None:
    for name, (ok, expected) in fields.items():
        if name not in record:
            raise LongifyError(f"{where}: missing field '{prefix}{name}' ({what})")
        if not ok(record[name]):
            raise LongifyError(f"{where}: field '{prefix}{name}' must be {expected}, got {record[name]!r}")


def _jsonl(
    path: Path, fields: dict[str, Check], what: str, optional: dict[str, Check] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of each non-blank line, each row checked against ``fields`` (and the ``optional``
    ones it has) and cut to them."""
    optional = optional or {}
    for lineno, text in utf8_lines(path):
        if not text.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise LongifyError(f"{where}: not JSON ({err.msg}: column {err.colno})") from None
        if not isinstance(row, dict):
            raise LongifyError(f"{where}: expected a JSON object ({what}), got {type(row).__name__}")
        _check(where, row, fields, what)
        _check(where, row, {k: c for k, c in optional.items() if k in row}, what)
        yield lineno, {name: row[name] for name in [*fields, *(k for k in optional if k in row)]}


def _in_order(
    rows: Iterable[dict[str, Any]], fields: dict[str, Check], optional: dict[str, Check] | None = None
) -> Iterator[dict[str, Any]]:
    """Each row with exactly the schema's keys (and the ``optional`` ones it has, last), in its order (a row
    with other keys is a bug: ValueError)."""
    optional = optional or {}
    for row in rows:
        extra = set(row) - set(fields)
        if not set(fields) <= set(row) or not extra <= set(optional):
            raise ValueError(f"a row with keys {sorted(row)}, expected {list(fields)}")
        yield {name: row[name] for name in [*fields, *(k for k in optional if k in extra)]}


def read_study_results(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``results.jsonl``: (line number, row) of each row; a second row for the same model, eval set,
    language and seed is refused."""
    need_file(path, "a study folder holds it once `longify study run` has evaluated a model")
    seen: dict[tuple[Any, ...], int] = {}
    rows = []
    for lineno, row in _jsonl(path, RESULT_FIELDS, "a results row", RESULT_OPTIONAL):
        key = (row["model"], row["eval_set"], row["language"], row["seed"])
        if key in seen:
            raise LongifyError(
                f"{path}: line {lineno}: a second row for model {key[0]!r}, eval_set {key[1]!r}, language "
                f"{key[2]!r}, seed {key[3]} (first at line {seen[key]})"
            )
        seen[key] = lineno
        rows.append((lineno, row))
    return rows


def write_study_results(path: Path, rows: Iterable[dict[str, Any]]) -> bool:
    """``results.jsonl`` (left as it is when it holds these rows already; True when written); a row's
    ``target`` (``RESULT_OPTIONAL``) comes last, where it has one."""
    return write_jsonl_atomic(path, _in_order(rows, RESULT_FIELDS, RESULT_OPTIONAL), ensure_ascii=True)


def read_pretrain_curves(path: Path) -> list[dict[str, Any]] | None:
    """``pretrain_curves.jsonl``, or None when there is none (the study pretrained nothing)."""
    if path_kind(path) is None:
        return None
    need_file(path, "")
    return [row for _, row in _jsonl(path, CURVE_FIELDS, "a pretraining curve point")]


def write_pretrain_curves(path: Path, rows: Iterable[dict[str, Any]]) -> bool:
    """``pretrain_curves.jsonl`` (left as it is when it holds these rows already; True when written)."""
    return write_jsonl_atomic(path, _in_order(rows, CURVE_FIELDS), ensure_ascii=True)


def read_study_costs(path: Path) -> list[dict[str, Any]] | None:
    """``costs.jsonl``, or None when there is none (a study from before costs were recorded)."""
    if path_kind(path) is None:
        return None
    need_file(path, "")
    return [row for _, row in _jsonl(path, COST_FIELDS, "a training run's cost")]


def write_study_costs(path: Path, rows: Iterable[dict[str, Any]]) -> bool:
    """``costs.jsonl`` (left as it is when it holds these rows already; True when written)."""
    return write_jsonl_atomic(path, _in_order(rows, COST_FIELDS), ensure_ascii=True)


def run_cost(path: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    """The ``cost`` of a run's record ``data`` (read from ``path``) with every ``RUN_COST_FIELDS`` key (null
    where it lacks one), or None when it has none (a run that trained nothing, or from before costs)."""
    cost = data.get("cost")
    if cost is None:
        return None
    if not isinstance(cost, dict):
        raise LongifyError(f"{path}: field 'cost' must be an object or null, got {cost!r}")
    cost = {name: cost.get(name) for name in RUN_COST_FIELDS}
    _check(str(path), cost, RUN_COST_FIELDS, "a run's cost", "cost.")
    return cost


def read_question_scores(path: Path, origin: str) -> list[dict[str, Any]]:
    """``question_scores.jsonl``: one row per scored question, EM and F1 in percent or in fractions;
    ``origin`` says where the file's name came from. A question scored twice is refused."""
    need_file(path, origin)
    rows = [row for _, row in _jsonl(path, QUESTION_FIELDS, "a question score")]
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if (row["language"], row["id"]) in seen:
            raise LongifyError(f"{path}: question id {row['id']!r} ({row['language']}) is scored twice")
        seen.add((row["language"], row["id"]))
    return rows


def write_question_scores(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """``question_scores.jsonl``: id, language, EM and F1 (in percent) of each scored question."""
    write_jsonl_atomic(path, _in_order(rows, QUESTION_FIELDS))


def _read_object(path: Path, hint: str) -> dict[str, Any]:
    need_file(path, hint)
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise LongifyError(f"{path}: not JSON ({err.msg}: line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict):
        raise LongifyError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _check_analysis(path: Path, analysis: Any) -> None:
    """``analysis``: EM, F1 and count by answer-position and context-length bucket (``LOW-HIGH``)."""
    for kind in ("answer_position", "context_length"):
        buckets = analysis.get(kind) if isinstance(analysis, dict) else None
        if not isinstance(buckets, dict):
            raise LongifyError(f"{path}: field 'analysis.{kind}' must be an object of buckets")
        for label, scores in buckets.items():
            if not re.fullmatch(r"\d+-\d+", str(label)):
                raise LongifyError(f"{path}: field 'analysis.{kind}' has bucket {label!r}, expected LOW-HIGH")
            if not isinstance(scores, dict) or not finite_number(scores.get("f1")):
                raise LongifyError(f"{path}: field 'analysis.{kind}.{label}.f1' must be a finite number")
            for name, (ok, expected) in (("exact_match", PERCENT), ("count", INT)):
                if scores.get(name) is not None and not ok(scores[name]):
                    raise LongifyError(
                        f"{path}: field 'analysis.{kind}.{label}.{name}' must be {expected}, got {scores[name]!r}"
                    )


_SCORES: dict[str, Check] = {"exact_match": PERCENT, "f1": PERCENT}
_LANGUAGE_SCORES: dict[str, Check] = {**_SCORES, "total": INT}


def read_qa_results(path: Path, origin: str = "", *, scored: bool = False) -> dict[str, Any]:
    """``results.json`` of ``qa train`` / ``qa evaluate``. Its scores are checked where it has them, and
    must be there when ``scored`` (an evaluation's): ``per_language`` (language -> EM, F1 in percent and
    total), ``average`` (EM, F1), ``analysis`` (buckets). ``origin``: where the file's name came from."""
    data = _read_object(path, origin)
    for name in ("per_language", "average") if scored else ():
        if name not in data:
            raise LongifyError(f"{path}: missing field '{name}' (an evaluation's scores)")
    if "per_language" in data:
        if not isinstance(data["per_language"], dict):
            raise LongifyError(f"{path}: field 'per_language' must be an object of languages")
        for lang, scores in data["per_language"].items():
            if not isinstance(scores, dict):
                raise LongifyError(f"{path}: field 'per_language.{lang}' must be an object")
            _check(str(path), scores, _LANGUAGE_SCORES, "a language's scores", f"per_language.{lang}.")
    if "average" in data:
        if not isinstance(data["average"], dict):
            raise LongifyError(f"{path}: field 'average' must be an object")
        _check(str(path), data["average"], _SCORES, "the headline scores", "average.")
    if data.get("analysis") is not None:
        _check_analysis(path, data["analysis"])
    return data


def write_qa_results(path: Path, results: dict[str, Any]) -> None:
    """``results.json``: the scores with the run's arguments, versions and ``defining_args``."""
    write_json_atomic(path, results)


def read_pretrain_metrics(path: Path, origin: str = "") -> dict[str, Any]:
    """``pretrain_metrics.json``: ``initial`` (the evaluation at step 0, or null) and ``evals`` (the later
    ones), each an object with an integer ``step``; ``final`` (the evaluation after training, or null); the
    run's facts beside. ``origin``: where the file's name came from."""
    data = _read_object(path, origin)
    evals = data.get("evals", [])
    if not isinstance(evals, list):
        raise LongifyError(f"{path}: field 'evals' must be a list of evaluations")
    entries = [("initial", data["initial"])] if data.get("initial") is not None else []
    entries += [(f"evals[{i}]", entry) for i, entry in enumerate(evals)]
    for name, entry in entries:
        if not isinstance(entry, dict):
            raise LongifyError(f"{path}: field '{name}' must be an evaluation (an object), got {entry!r}")
        _check(str(path), entry, {"step": INT}, "an evaluation", f"{name}.")
    if not isinstance(data.get("final"), (dict, type(None))):
        raise LongifyError(
            f"{path}: field 'final' must be an evaluation (an object) or null, got {data['final']!r}"
        )
    return data


def write_pretrain_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """``pretrain_metrics.json`` (see ``read_pretrain_metrics``)."""
    write_json_atomic(path, metrics)
