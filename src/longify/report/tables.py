"""Mean ± standard deviation over seeds per eval set x language x model, as CSV, Markdown and LaTeX; F1 by
answer position per model, grouped by target.

The standard deviation is the sample one (ddof=1); with a single seed it is undefined and left out. A study
whose results.jsonl names targets gets a ``target`` column (a ``target`` row in the pivoted tables); one that
does not gets the tables it always had.
"""

from __future__ import annotations

import math

import pandas as pd

from longify.artifacts import AVERAGE

KEYS = ["eval_set", "language", "model"]
TARGET_ORDER = ("short", "longformer", "full", "bigbird")  # then any other, by name
UNKNOWN = "-"


def model_targets(results: pd.DataFrame) -> dict[str, str] | None:
    """Model -> target from results.jsonl's ``target`` column (``-`` for a model without one), or None
    when the study names no targets."""
    if "target" not in results.columns:
        return None
    named = results.dropna(subset=["target"]).drop_duplicates("model")
    found = dict(zip(named["model"], named["target"], strict=True))
    return {m: str(found.get(m, UNKNOWN)) for m in dict.fromkeys(results["model"])}


def target_rank(target: str) -> tuple[int, str]:
    return (TARGET_ORDER.index(target), "") if target in TARGET_ORDER else (len(TARGET_ORDER), target)


def language_order(languages: list[str]) -> list[str]:
    """Languages sorted, the benchmark's ``average`` row last."""
    return sorted(set(languages) - {AVERAGE}) + ([AVERAGE] if AVERAGE in languages else [])


# mean and sample std over seeds of F1 and EM, and the number of seeds (pandas named aggregations)
SEED_STATS = {
    "f1_mean": ("f1", "mean"),
    "f1_std": ("f1", "std"),
    "em_mean": ("exact_match", "mean"),
    "em_std": ("exact_match", "std"),
    "seeds": ("seed", "nunique"),
}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (eval set, language, model): mean and std of F1 and EM over seeds, the number of seeds
    and of questions (the largest ``total`` over the seeds)."""
    grouped = results.groupby(KEYS, sort=False)
    table = grouped.agg(**SEED_STATS, questions=("total", "max")).reset_index()
    table = table[[*KEYS, "f1_mean", "f1_std", "em_mean", "em_std", "seeds", "questions"]]
    if (targets := model_targets(results)) is not None:
        table.insert(len(KEYS), "target", table["model"].map(targets))
    order = {lang: i for i, lang in enumerate(language_order(list(table["language"])))}
    models = {m: i for i, m in enumerate(dict.fromkeys(results["model"]))}
    table = table.assign(_l=table["language"].map(order), _m=table["model"].map(models))
    table = table.sort_values(["eval_set", "_l", "_m"], kind="stable").drop(columns=["_l", "_m"])
    return table.reset_index(drop=True)


BUCKET_KEYS = ["eval_set", "model", "kind", "bucket", "low"]


def bucket_summary(
    buckets: pd.DataFrame, models: list[str], targets: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per (eval set, model, kind, bucket): examples in the bucket (``n``, the largest count over
    seeds), seeds, and mean and sample std over seeds of F1 and EM; with each model's target after it
    where ``targets`` are given. ``buckets``: one row per seed."""
    columns = [*BUCKET_KEYS, "n", "seeds", "f1_mean", "f1_std", "em_mean", "em_std"]
    if targets is not None:
        columns.insert(2, "target")
        buckets = buckets.assign(target=buckets["model"].map(targets))
    if buckets.empty:
        return pd.DataFrame(columns=columns)
    keys = [k for k in columns if k in (*BUCKET_KEYS, "target")]
    table = buckets.groupby(keys, sort=False).agg(n=("count", "max"), **SEED_STATS).reset_index()
    sets = {e: i for i, e in enumerate(dict.fromkeys(buckets["eval_set"]))}
    order = {m: i for i, m in enumerate(models)}
    table = table.assign(_e=table["eval_set"].map(sets), _m=table["model"].map(order))
    table = table.sort_values(["_e", "_m", "kind", "low"], kind="stable").drop(columns=["_e", "_m"])
    table["n"] = table["n"].round().astype("Int64")  # NaN (a results.json without counts) stays empty
    return table.reset_index(drop=True)[columns]


def mean_std(mean: float, std: float, digits: int = 1, pm: str = " ± ") -> str:
    return (
        f"{mean:.{digits}f}" if std is None or math.isnan(std) else f"{mean:.{digits}f}{pm}{std:.{digits}f}"
    )


def _questions(value: float) -> str:
    return "" if value is None or math.isnan(value) else str(int(value))


def _pivot_rows(table: pd.DataFrame, eval_set: str, pm: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one eval set: a row per language, a column per model (F1 / EM), questions last."""
    part = table[table["eval_set"] == eval_set]
    models = list(dict.fromkeys(part["model"]))
    common = int(part["seeds"].mode().iloc[0])
    rows = []
    if "target" in part.columns:  # under the model names: what each one is
        named = dict(zip(part["model"], part["target"], strict=True))
        rows.append(["target", *(str(named[m]) for m in models), ""])
    for lang in dict.fromkeys(part["language"]):
        cells = [lang]
        for model in models:
            hit = part[(part["language"] == lang) & (part["model"] == model)]
            if hit.empty:
                cells.append("–")
                continue
            r = hit.iloc[0]
            cell = f"{mean_std(r.f1_mean, r.f1_std, pm=pm)} / {mean_std(r.em_mean, r.em_std, pm=pm)}"
            cells.append(cell + (f" ({r.seeds} seeds)" if r.seeds != common else ""))
        cells.append(
            "/".join(dict.fromkeys(_questions(q) for q in part[part["language"] == lang]["questions"]))
        )
        rows.append(cells)
    return ["language", *models, "questions"], rows


def seeds_note(table: pd.DataFrame, eval_set: str) -> str:
    seeds = int(table[table["eval_set"] == eval_set]["seeds"].mode().iloc[0])
    return f"F1 / EM, mean ± std over {seeds} seed{'s' * (seeds != 1)}"


def markdown_table(table: pd.DataFrame, eval_set: str) -> str:
    header, rows = _pivot_rows(table, eval_set, " ± ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def position_markdown(summary: pd.DataFrame, eval_set: str, targets: dict[str, str]) -> str:
    """F1 by answer position (mean ± std over seeds): a row per model, grouped by target (short first), a
    column per bucket with its examples. ``summary``: ``bucket_summary`` rows."""
    part = summary[(summary["eval_set"] == eval_set) & (summary["kind"] == "answer_position")]
    if part.empty:
        return ""
    labels = list(part.sort_values("low")["bucket"].drop_duplicates())
    models = sorted(dict.fromkeys(part["model"]), key=lambda m: target_rank(targets.get(m, UNKNOWN)))
    lines = ["| model | target | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(labels)]
    for model in models:
        stats = part[part["model"] == model].set_index("bucket").reindex(labels)
        cells = [
            "–"
            if pd.isna(r.f1_mean)
            else mean_std(r.f1_mean, r.f1_std) + ("" if pd.isna(r.n) else f" (n={r.n})")
            for r in stats.itertuples()
        ]
        lines.append(
            "| " + " | ".join(_md_escape(c) for c in [model, targets.get(model, UNKNOWN), *cells]) + " |"
        )
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def latex_table(table: pd.DataFrame, eval_set: str) -> str:
    """A booktabs ``tabular`` of one eval set, in a ``table`` with its caption."""
    header, rows = _pivot_rows(table, eval_set, " $\\pm$ ")
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
        *(" & ".join(_latex_cell(c) for c in row) + " \\\\" for row in rows),
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{latex_escape(eval_set)}: {seeds_note(table, eval_set)}.}}".replace("±", "$\\pm$"),
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _latex_cell(cell: str) -> str:
    """Escape a cell except the ``$\\pm$`` the pivot put in it."""
    return " $\\pm$ ".join(latex_escape(part) for part in cell.split(" $\\pm$ "))
