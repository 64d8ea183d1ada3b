"""The text of report.md: tables, the long-vs-short comparison with its method, and the plots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from longify.report.compare import POOLED, Row
from longify.report.tables import UNKNOWN, markdown_table, seeds_note


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _interval(delta: float, low: float, high: float) -> str:
    return f"{delta:+.2f} [{low:+.2f}, {high:+.2f}]"


def comparison_markdown(rows: list[Row], level: float, targets: dict[str, str] | None = None) -> str:
    """The long-vs-short table; with the long model's target after it where ``targets`` are given."""
    pct = f"{level:.0%}"
    named = targets is not None
    head = (
        f"| long model | {'target | ' * named}short source | eval set | language | Δ F1 [{pct} CI] | "
        f"Δ EM [{pct} CI] | questions | seeds | F1 CI excludes 0 |\n|---|{'---|' * named}---|---|---|---:|---:|"
        "---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        c = r.result
        model = f"{r.model} | {(targets or {}).get(r.model, UNKNOWN)}" if named else r.model
        if c is None:
            note = r.note or "no common questions"
            lines.append(f"| {model} | {r.source_model} | {r.eval_set} | {r.language} | {note} | | | | |")
            continue
        lang = f"**{r.language}**" if r.language == POOLED else r.language
        lines.append(
            f"| {model} | {r.source_model} | {r.eval_set} | {lang} | {_interval(c.f1.delta, c.f1.low, c.f1.high)}"
            f" | {_interval(c.exact_match.delta, c.exact_match.low, c.exact_match.high)} | {c.questions} | "
            f"{c.seeds} | {'yes' if c.f1.excludes_zero else 'no'} |"
        )
    return head + "\n".join(lines) + "\n"


def _seeds(seeds: tuple[int, ...]) -> str:
    return f"seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}"


def seeds_notes(rows: list[Row]) -> str:
    """Under the comparison table: for each comparison that paired fewer seeds than its models have, the
    seeds its Δ comes from and those left out (the results tables above use all of them)."""
    groups: dict[tuple[object, ...], list[str]] = {}
    everywhere = Counter((r.model, r.source_model, r.eval_set) for r in rows)
    for r in rows:
        if r.result is not None and r.left_out:
            groups.setdefault((r.model, r.source_model, r.eval_set, r.seeds_used, r.left_out), []).append(
                r.language
            )
    lines = []
    for (model, source, eval_set, used, left), langs in groups.items():
        where = "" if len(langs) == everywhere[(model, source, eval_set)] else f" ({', '.join(langs)})"
        out = " and ".join(f"{_seeds(s)} of {m}" for m, s in left)
        lines.append(
            f"- {model} vs {source} on {eval_set}{where}: Δ from {_seeds(used)} only; left out: {out}."
        )
    if not lines:
        return ""
    return (
        "Δ pairs only the seeds both models were evaluated with, while the results tables above average "
        "each model over all of its seeds:\n\n" + "\n".join(lines) + "\n"
    )


def method_text(resamples: int, seed: int, level: float) -> str:
    return (
        "Δ is long minus short, in points, averaged over every (seed, question) that both models scored "
        "(per-question F1 and EM from each evaluation's `question_scores.jsonl`, paired by seed, language and "
        f"question id). The interval is a **paired bootstrap over questions**: {resamples} resamples (numpy "
        f"`default_rng({seed})`) draw questions with replacement, each carrying all its seeds, and the "
        f"{level:.0%} interval runs from the {50 * (1 - level):g}th to the {50 * (1 + level):g}th percentile of "
        "the resampled mean differences. "
        "An interval that excludes 0 says the difference is unlikely to be noise of the question sample; "
        "it does not cover the variation between training runs beyond the seeds used."
    )


def report_markdown(
    study: Path,
    table: pd.DataFrame,
    comparisons: list[Row],
    figures: dict[str, Path],
    out: Path,
    *,
    resamples: int,
    seed: int,
    level: float,
    has_average: bool,
    positions: dict[str, str] | None = None,
    cost: str | None = None,
    targets: dict[str, str] | None = None,
) -> str:
    """``positions``: eval set -> its F1-by-answer-position table per target (a study that names targets);
    ``cost``: the accuracy-and-cost section's text (a study with costs.jsonl); ``targets``: model -> target
    (a study that names them: a target column in the comparison table). Without them, the report a
    study from before targets and costs always had."""
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    eval_sets = list(dict.fromkeys(table["eval_set"]))
    parts = [
        f"# Study report: {study.resolve().name}\n",
        f"{_count(table['model'].nunique(), 'model')}, {_count(len(eval_sets), 'eval set')}, read from `results.jsonl` in "
        f"`{study}`. Files beside this one: `results.csv` (every number below, long format), `tables.tex` "
        "(LaTeX, booktabs), `comparisons.csv`, `buckets.csv` (F1 / EM and examples per bucket), `plots/`.\n",
    ]
    if "pretraining" in figures:
        parts += ["## Pretraining\n", f"![pretraining curves]({rel(figures['pretraining'])})\n"]
    parts.append("## Results\n")
    if has_average:
        parts.append(
            "The `average` row is the benchmark's official headline average, per seed, then over seeds.\n"
        )
    for eval_set in eval_sets:
        parts += [f"### {eval_set}\n", f"{seeds_note(table, eval_set)}; questions per language.\n",
                  markdown_table(table, eval_set)]  # fmt: skip
        if f"languages:{eval_set}" in figures:
            parts.append(f"![F1 per language on {eval_set}]({rel(figures[f'languages:{eval_set}'])})\n")
        if f"buckets:{eval_set}" in figures:
            parts.append(f"![F1 by bucket on {eval_set}]({rel(figures[f'buckets:{eval_set}'])})\n")
        if (positions or {}).get(eval_set):
            parts += [f"F1 by answer position on {eval_set} (tokens), per target; mean ± std over seeds, "
                      "n: examples in the bucket.\n", (positions or {})[eval_set]]  # fmt: skip
    if cost:
        parts += ["## Accuracy and cost\n", cost]
    parts.append("## Long vs short\n")
    if comparisons:
        parts += [
            method_text(resamples, seed, level) + "\n",
            comparison_markdown(comparisons, level, targets),
        ]
        if note := seeds_notes(comparisons):
            parts.append(note)
    else:
        parts.append("No long model in these results has its short source (`source_model`) evaluated too.\n")
    return "\n".join(parts)
