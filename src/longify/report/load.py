"""Reading a study's result files into DataFrames, with one clear line naming the file, line and field
for anything missing or malformed."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from longify.artifacts import (
    COST_FIELDS,
    CURVE_FIELDS,
    PRETRAIN_CURVES_FILE,
    QUESTION_FIELDS,
    STUDY_COSTS_FILE,
    STUDY_RESULTS_FILE,
    read_pretrain_curves,
    read_qa_results,
    read_question_scores,
    read_study_costs,
    read_study_results,
)
from longify.errors import LongifyError


def resolve(study_dir: Path, value: str) -> Path:
    """A path from a results row: relative paths are relative to the study folder."""
    path = Path(value)
    return path if path.is_absolute() else study_dir / path


def load_results(study_dir: Path) -> pd.DataFrame:
    """``results.jsonl``: one row per (model, eval set, language, seed), duplicates refused; ``line`` keeps
    each row's line number for later messages."""
    path = study_dir / STUDY_RESULTS_FILE
    rows = [{**row, "line": lineno} for lineno, row in read_study_results(path)]
    if not rows:
        raise LongifyError(f"{path}: no results rows")
    return pd.DataFrame(rows)


def load_costs(study_dir: Path) -> pd.DataFrame | None:
    """``costs.jsonl`` (one row per training run), or None when the study has none (a study from before
    costs were recorded, or whose runs recorded none)."""
    rows = read_study_costs(study_dir / STUDY_COSTS_FILE)
    if not rows:
        return None
    costs = pd.DataFrame(rows, columns=list(COST_FIELDS))
    numbers = [k for k, (_, expected) in COST_FIELDS.items() if "number" in expected or "integer" in expected]
    return costs.astype({k: float for k in numbers if k != "seed"})  # null: NaN, also where all are null


def load_question_scores(path: Path, origin: str) -> pd.DataFrame:
    """One row per scored question, EM and F1 as the file holds them: in percent, or in fractions in [0, 1]
    (which one is decided against the results rows, see ``compare.checked_scores``); ``origin`` says which
    results row named the file."""
    return pd.DataFrame(read_question_scores(path, origin), columns=list(QUESTION_FIELDS))


def load_curves(study_dir: Path) -> pd.DataFrame | None:
    """``pretrain_curves.jsonl``, or None when the study pretrained nothing (no such file, or no rows)."""
    rows = read_pretrain_curves(study_dir / PRETRAIN_CURVES_FILE)
    return pd.DataFrame(rows, columns=list(CURVE_FIELDS)) if rows else None


def load_analysis(path: Path, origin: str) -> dict[str, dict[str, dict[str, float]]] | None:
    """The ``analysis`` of a results.json (EM, F1 and count by answer-position and context-length bucket;
    NaN for an EM or count it lacks), or None when it has none."""
    analysis = read_qa_results(path, origin).get("analysis")
    if analysis is None:
        return None
    return {
        kind: {
            label: {
                name: math.nan if s.get(name) is None else float(s[name])
                for name in ("exact_match", "f1", "count")
            }
            for label, s in analysis[kind].items()
        }
        for kind in ("answer_position", "context_length")
    }
