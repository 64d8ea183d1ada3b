"""Which long model to compare with which short one, and the paired bootstrap of each comparison per eval
set and language (plus all languages pooled)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from longify.report.bootstrap import Comparison, pair_scores, paired_bootstrap
from longify.report.load import AVERAGE, load_question_scores, resolve

POOLED = "all (pooled)"


@dataclass(frozen=True)
class Row:
    model: str
    source_model: str
    eval_set: str
    language: str
    result: Comparison | None  # None: no question scores to pair
    note: str = ""


def pairs_of(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(long model, its short source) for every long model whose source is in the results too."""
    models = set(results["model"])
    found = results.dropna(subset=["source_model"])[["model", "source_model"]].drop_duplicates()
    return [(m, s) for m, s in found.itertuples(index=False) if s in models and s != m]


class ScoreCache:
    """Question scores per (model, eval set), all seeds, read once per file."""

    def __init__(self, study_dir: Path, results: pd.DataFrame) -> None:
        self.study_dir = study_dir
        self.results = results
        self.files: dict[Path, pd.DataFrame] = {}

    def scores(self, model: str, eval_set: str) -> pd.DataFrame | None:
        rows = self.results[
            (self.results["model"] == model)
            & (self.results["eval_set"] == eval_set)
            & (self.results["language"] != AVERAGE)
        ]
        parts = []
        for seed in sorted(set(rows["seed"])):
            mine = rows[rows["seed"] == seed]
            paths = mine["question_scores_path"].dropna()
            if paths.empty:
                return None
            line = int(mine.loc[paths.index[0], "line"])
            path = resolve(self.study_dir, paths.iloc[0])
            if path not in self.files:
                origin = f"question_scores_path of results.jsonl line {line}"
                self.files[path] = load_question_scores(path, origin)
            parts.append(self.files[path].assign(seed=seed))
        return pd.concat(parts, ignore_index=True) if parts else None


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
            languages = sorted(set(pairs["language"]))
            for lang in languages:
                result = paired_bootstrap(pairs[pairs["language"] == lang], **bootstrap)
                out.append(Row(model, source, eval_set, lang, result))
            if len(languages) > 1:
                out.append(Row(model, source, eval_set, POOLED, paired_bootstrap(pairs, **bootstrap)))
    return out
