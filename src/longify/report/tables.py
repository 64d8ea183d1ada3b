"""Mean ± standard deviation over seeds per eval set x language x model, as CSV, Markdown and LaTeX.

The standard deviation is the sample one (ddof=1); with a single seed it is undefined and left out.
"""

from __future__ import annotations

import math

import pandas as pd

from longify.artifacts import AVERAGE

KEYS = ["eval_set", "language", "model"]


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
    order = {lang: i for i, lang in enumerate(language_order(list(table["language"])))}
    models = {m: i for i, m in enumerate(dict.fromkeys(results["model"]))}
    table = table.assign(_l=table["language"].map(order), _m=table["model"].map(models))
    table = table.sort_values(["eval_set", "_l", "_m"], kind="stable").drop(columns=["_l", "_m"])
    return table.reset_index(drop=True)


BUCKET_KEYS = ["eval_set", "model", "kind", "bucket", "low"]


def bucket_summary(buckets: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per (eval set, model, kind, bucket): examples in the bucket (``n``, the largest count over
    seeds), seeds, and mean and sample std over seeds of F1 and EM. ``buckets``: one row per seed."""
    columns = [*BUCKET_KEYS, "n", "seeds", "f1_mean", "f1_std", "em_mean", "em_std"]
    if buckets.empty:
        return pd.DataFrame(columns=columns)
    table = buckets.groupby(BUCKET_KEYS, sort=False).agg(n=("count", "max"), **SEED_STATS).reset_index()
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
