"""Which long model to compare with which short one, and the paired bootstrap of each comparison per eval
set and language (plus all languages pooled).

Question scores are checked against results.jsonl before use: per (model, eval set, seed, language) the mean
of the questions must be the row's F1 and EM, which also says whether a file is in percent or in fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from longify.artifacts import AVERAGE
from longify.errors import LongifyError
from longify.report.bootstrap import Comparison, pair_scores, paired_bootstrap
from longify.report.load import load_question_scores, resolve

POOLED = "all (pooled)"
REL_TOL = 1e-6
ABS_TOL = 0.01  # points: room for scores rounded in the file
SCALES = (1.0, 100.0)  # a question scores file in percent, or in fractions


@dataclass(frozen=True)
class Row:
    model: str
    source_model: str
    eval_set: str
    language: str
    result: Comparison | None  # None: no question scores to pair
    note: str = ""
    seeds_used: tuple[int, ...] = ()
    left_out: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (model, its seeds the other model lacks)


def pairs_of(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(long model, its short source) for every long model whose source is in the results too."""
    models = set(results["model"])
    found = results.dropna(subset=["source_model"])[["model", "source_model"]].drop_duplicates()
    return [(m, s) for m, s in found.itertuples(index=False) if s in models and s != m]


def _agrees(means: pd.DataFrame, row: pd.Series, scale: float) -> bool:
    got = means.loc[row["language"]]
    return all(
        math.isclose(scale * got[k], row[k], rel_tol=REL_TOL, abs_tol=ABS_TOL) for k in ("f1", "exact_match")
    )


def _mismatch(files: str, means: pd.DataFrame, row: pd.Series, why: str) -> LongifyError:
    got = means.loc[row["language"]]
    return LongifyError(
        f"{files}: its {row['language']!r} questions average F1 {got['f1']:.6g} / EM {got['exact_match']:.6g}, "
        f"but results.jsonl line {row['line']} has F1 {row['f1']:.6g} / EM {row['exact_match']:.6g} ({why}): "
        "the file and that row disagree"
    )


def file_scale(path: Path, scores: pd.DataFrame, rows: pd.DataFrame) -> float:
    """1 when the file's per-language means are the F1/EM of ``rows`` (the results rows naming it) in
    percent, 100 when they are in fractions; anything else is refused."""
    means = scores.groupby("language")[["exact_match", "f1"]].mean()
    for _, row in rows.iterrows():
        if row["language"] not in means.index:
            raise LongifyError(
                f"{path}: holds no question of language {row['language']!r} "
                f"(question_scores_path of results.jsonl line {row['line']})"
            )
    fits = {scale: [_agrees(means, row, scale) for _, row in rows.iterrows()] for scale in SCALES}
    for scale, ok in fits.items():
        if all(ok):
            return scale
    neither = [i for i in range(len(rows)) if not any(fits[s][i] for s in SCALES)]
    bad = neither[0] if neither else fits[1.0].index(False)
    why = (
        "neither in percent nor in fractions"
        if neither
        else "as fractions, where other rows match in percent"
    )
    raise _mismatch(str(path), means, rows.iloc[bad], why)


class ScoreCache:
    """Question scores per (model, eval set), all seeds, in percent; each file read once."""

    def __init__(self, study_dir: Path, results: pd.DataFrame) -> None:
        self.study_dir = study_dir
        self.results = results
        self.files: dict[Path, pd.DataFrame] = {}

    def _file(self, path: Path, line: int) -> pd.DataFrame:
        if path not in self.files:
            self.files[path] = load_question_scores(
                path, f"question_scores_path of results.jsonl line {line}"
            )
        return self.files[path]

    def seed_scores(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The questions of one (model, eval set, seed) from every file its rows name, de-duplicated, in
        percent, each language's mean checked against its row."""
        named = rows.dropna(subset=["question_scores_path"])
        parts, paths = [], []
        for value, group in named.groupby("question_scores_path", sort=False):
            path = resolve(self.study_dir, value)
            raw = self._file(path, int(group["line"].iloc[0]))
            scale = file_scale(path, raw, group)
            parts.append(raw.assign(exact_match=raw["exact_match"] * scale, f1=raw["f1"] * scale))
            paths.append(str(path))
        scores = pd.concat(parts, ignore_index=True).drop_duplicates()
        scores = scores[scores["language"].isin(set(rows["language"]))]
        twice = scores.duplicated(["language", "id"])
        if twice.any():
            q = scores[twice].iloc[0]
            raise LongifyError(
                f"{', '.join(paths)}: question id {q['id']!r} ({q['language']}) has different scores in two "
                f"files of the same evaluation (results.jsonl line {int(rows['line'].iloc[0])})"
            )
        means = scores.groupby("language")[["exact_match", "f1"]].mean()
        for _, row in rows[rows["language"].isin(means.index)].iterrows():
            if not _agrees(means, row, 1.0):  # languages whose questions are spread over several files
                raise _mismatch(", ".join(paths), means, row, "all its files together")
        return scores.reset_index(drop=True)

    def scores(self, model: str, eval_set: str) -> pd.DataFrame | None:
        rows = self.results[
            (self.results["model"] == model)
            & (self.results["eval_set"] == eval_set)
            & (self.results["language"] != AVERAGE)
        ]
        parts = []
        for seed in sorted(set(rows["seed"])):
            mine = rows[rows["seed"] == seed]
            if mine["question_scores_path"].isna().all():
                return None
            parts.append(self.seed_scores(mine).assign(seed=seed))
        return pd.concat(parts, ignore_index=True) if parts else None


def _seeds(frame: pd.DataFrame) -> set[int]:
    return {int(s) for s in frame["seed"]}


def _row(
    names: tuple[str, str, str, str], pairs: pd.DataFrame, frames: dict[str, pd.DataFrame], **bootstrap: int
) -> Row:
    """One comparison row: the bootstrap of ``pairs`` and which seeds it used and left out."""
    used = _seeds(pairs)
    left = tuple((m, tuple(sorted(_seeds(f) - used))) for m, f in frames.items() if _seeds(f) - used)
    return Row(*names, paired_bootstrap(pairs, **bootstrap), seeds_used=tuple(sorted(used)), left_out=left)


def compare(study_dir: Path, results: pd.DataFrame, **bootstrap: int) -> list[Row]:
    """Every long model against its short source on every eval set both were evaluated on."""
    cache = ScoreCache(study_dir, results)
    out = []
    for model, source in pairs_of(results):
        sets = dict.fromkeys(results[results["model"] == model]["eval_set"])
        for eval_set in (e for e in sets if e in set(results[results["model"] == source]["eval_set"])):
            long, short = cache.scores(model, eval_set), cache.scores(source, eval_set)
            if long is None or short is None:
                out.append(Row(model, source, eval_set, "–", None, "no question scores"))
                continue
            pairs = pair_scores(long, short)
            if pairs.empty:
                out.append(Row(model, source, eval_set, "–", None, "no common questions"))
                continue
            languages = sorted(set(pairs["language"]))
            for lang in languages:
                frames = {model: long[long["language"] == lang], source: short[short["language"] == lang]}
                names = (model, source, eval_set, lang)
                out.append(_row(names, pairs[pairs["language"] == lang], frames, **bootstrap))
            if len(languages) > 1:
                out.append(
                    _row((model, source, eval_set, POOLED), pairs, {model: long, source: short}, **bootstrap)
                )
    return out
