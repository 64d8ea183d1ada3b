"""Reading a study's result files into DataFrames, with one clear line naming the file, line and field
for anything missing or malformed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from longify.errors import LongifyError
from longify.textfiles import path_kind, read_utf8, utf8_lines

AVERAGE = "average"  # the language of a benchmark's official headline row


def _str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _opt_str(v: Any) -> bool:
    return v is None or _str(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_int(v: Any) -> bool:
    return v is None or _int(v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _opt_number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _percent(v: Any) -> bool:
    return _number(v) and 0.0 <= v <= 100.0


Check = tuple[Callable[[Any], bool], str]
STR: Check = (_str, "a non-empty string")
OPT_STR: Check = (_opt_str, "a string or null")
INT: Check = (_int, "an integer")
OPT_INT: Check = (_opt_int, "an integer or null")
PERCENT: Check = (_percent, "a number from 0 to 100 (a score in percent)")
FRACTION_OR_PERCENT: Check = (_percent, "a number from 0 to 100 (a fraction in [0, 1] or a percent)")
OPT_NUMBER: Check = (_opt_number, "a number or null")

RESULT_FIELDS: dict[str, Check] = {
    "model": STR, "source_model": OPT_STR, "eval_set": STR, "task": STR, "language": STR, "seed": INT,
    "exact_match": PERCENT, "f1": PERCENT, "total": OPT_INT, "job_id": STR, "results_path": OPT_STR,
    "predictions_path": OPT_STR, "question_scores_path": OPT_STR,
}  # fmt: skip
QUESTION_FIELDS: dict[str, Check] = {
    "id": STR, "language": STR, "exact_match": FRACTION_OR_PERCENT, "f1": FRACTION_OR_PERCENT,
}  # fmt: skip
CURVE_FIELDS: dict[str, Check] = {
    "model": STR, "step": INT, "loss": OPT_NUMBER, "bits_per_token": OPT_NUMBER,
    "pseudo_bits_per_char": OPT_NUMBER, "job_id": OPT_STR,
}  # fmt: skip


def _rows(path: Path, fields: dict[str, Check], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of each non-blank line of a JSON-lines file, each row checked against ``fields``
    (extra keys are ignored)."""
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
        for name, (ok, expected) in fields.items():
            if name not in row:
                raise LongifyError(f"{where}: missing field {name!r} ({what})")
            if not ok(row[name]):
                raise LongifyError(f"{where}: field {name!r} must be {expected}, got {row[name]!r}")
        yield lineno, {name: row[name] for name in fields}


def _need_file(path: Path, hint: str) -> None:
    kind = path_kind(path)
    if kind is None:
        raise LongifyError(f"{path}: file not found ({hint})")
    if kind != "file":
        raise LongifyError(f"{path}: is a {'directory' if kind == 'dir' else 'special file'}, not a file")


def resolve(study_dir: Path, value: str) -> Path:
    """A path from a results row: relative paths are relative to the study folder."""
    path = Path(value)
    return path if path.is_absolute() else study_dir / path


def load_results(study_dir: Path) -> pd.DataFrame:
    """``results.jsonl``: one row per (model, eval set, language, seed), duplicates refused; ``line`` keeps
    each row's line number for later messages."""
    path = study_dir / "results.jsonl"
    _need_file(path, "a study folder holds it once `longify study run` has evaluated a model")
    seen: dict[tuple[Any, ...], int] = {}
    rows = []
    for lineno, row in _rows(path, RESULT_FIELDS, "a results row"):
        key = (row["model"], row["eval_set"], row["language"], row["seed"])
        if key in seen:
            raise LongifyError(
                f"{path}: line {lineno}: a second row for model {key[0]!r}, eval_set {key[1]!r}, language "
                f"{key[2]!r}, seed {key[3]} (first at line {seen[key]})"
            )
        seen[key] = lineno
        rows.append({**row, "line": lineno})
    if not rows:
        raise LongifyError(f"{path}: no results rows")
    return pd.DataFrame(rows)


def load_question_scores(path: Path, origin: str) -> pd.DataFrame:
    """One row per scored question, EM and F1 as the file holds them: in percent, or in fractions in [0, 1]
    (which one is decided against the results rows, see ``compare.checked_scores``); ``origin`` says which
    results row named the file."""
    _need_file(path, origin)
    rows = [row for _, row in _rows(path, QUESTION_FIELDS, "a question score")]
    frame = pd.DataFrame(rows, columns=list(QUESTION_FIELDS))
    twice = frame.duplicated(["language", "id"])
    if twice.any():
        first = frame[twice].iloc[0]
        raise LongifyError(f"{path}: question id {first['id']!r} ({first['language']}) is scored twice")
    return frame


def load_curves(study_dir: Path) -> pd.DataFrame | None:
    """``pretrain_curves.jsonl``, or None when the study pretrained nothing (no such file)."""
    path = study_dir / "pretrain_curves.jsonl"
    if path_kind(path) is None:
        return None
    _need_file(path, "")
    rows = [row for _, row in _rows(path, CURVE_FIELDS, "a pretraining curve point")]
    return pd.DataFrame(rows, columns=list(CURVE_FIELDS)) if rows else None


def load_analysis(path: Path, origin: str) -> dict[str, dict[str, dict[str, float]]] | None:
    """The ``analysis`` of a results.json (EM, F1 and count by answer-position and context-length bucket;
    NaN for an EM or count it lacks), or None when it has none."""
    _need_file(path, origin)
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise LongifyError(f"{path}: not JSON ({err.msg}: line {err.lineno}, column {err.colno})") from None
    analysis = data.get("analysis") if isinstance(data, dict) else None
    if analysis is None:
        return None
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("answer_position", "context_length"):
        buckets = analysis.get(kind) if isinstance(analysis, dict) else None
        if not isinstance(buckets, dict):
            raise LongifyError(f"{path}: field 'analysis.{kind}' must be an object of buckets")
        for label, scores in buckets.items():
            if not re.fullmatch(r"\d+-\d+", str(label)):
                raise LongifyError(f"{path}: field 'analysis.{kind}' has bucket {label!r}, expected LOW-HIGH")
            if not isinstance(scores, dict) or not _number(scores.get("f1")):
                raise LongifyError(f"{path}: field 'analysis.{kind}.{label}.f1' must be a finite number")
            for name, (ok, expected) in (("exact_match", PERCENT), ("count", INT)):
                if scores.get(name) is not None and not ok(scores[name]):
                    raise LongifyError(
                        f"{path}: field 'analysis.{kind}.{label}.{name}' must be {expected}, got {scores[name]!r}"
                    )
        out[kind] = {
            label: {
                name: math.nan if s.get(name) is None else float(s[name])
                for name in ("exact_match", "f1", "count")
            }
            for label, s in buckets.items()
        }
    return out
