"""What each model's training cost (costs.jsonl: one row per pretrain / qa train run) beside its headline
F1 / EM, so that accuracy per hour of training reads from the same runs.

Per model and stage: hours of training, seconds per step and train tokens per second (means over its runs:
the fine-tuning seeds) and peak memory (the largest). An unknown value is ``-``; a model the study did not
pretrain shows ``none`` in the pretraining columns.
"""

from __future__ import annotations

import math

import pandas as pd

from longify.artifacts import AVERAGE
from longify.report.tables import UNKNOWN, mean_std

STAGES = {"pretrain": "pretrain", "train": "fine-tune"}  # costs.jsonl stage -> its name in the report
NONE = "none"  # no run of this stage (a model the study did not pretrain)
SUMMARY_COLUMNS = ["model", "target", "stage", "runs", "train_hours", "steps", "seconds_per_step",
                   "train_tokens_per_second", "peak_memory_mb", "memory", "device"]  # fmt: skip


def _joined(values: pd.Series) -> str | None:
    found = [str(v) for v in dict.fromkeys(values.dropna())]
    return "; ".join(found) if found else None


def cost_summary(costs: pd.DataFrame, models: list[str], targets: dict[str, str] | None) -> pd.DataFrame:
    """One row per (model, stage) in report order: runs, mean hours, steps, seconds per step and tokens per
    second over the runs that know them, the largest peak memory, and what it measures and where."""
    rows = []
    order = {m: i for i, m in enumerate(models)}
    costs = costs.assign(_m=costs["model"].map(lambda m: order.get(m, len(order))))
    for (model, stage), part in costs.sort_values(["_m"], kind="stable").groupby(
        ["model", "stage"], sort=False
    ):
        rows.append(
            {
                "model": model,
                "target": None if targets is None else targets.get(str(model), UNKNOWN),
                "stage": stage,
                "runs": len(part),
                "train_hours": part["train_seconds"].mean() / 3600,
                "steps": part["steps"].mean(),
                "seconds_per_step": part["seconds_per_step"].mean(),
                "train_tokens_per_second": part["train_tokens_per_second"].mean(),
                "peak_memory_mb": part["peak_memory_mb"].max(),
                "memory": _joined(part["memory"]),
                "device": _joined(part["device"]),
            }
        )
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    table = table.assign(
        _s=table["stage"].map(lambda s: list(STAGES).index(s) if s in STAGES else len(STAGES))
    )
    table = table.assign(_m=table["model"].map(lambda m: order.get(m, len(order))))
    table = table.sort_values(["_m", "_s"], kind="stable").drop(columns=["_m", "_s"])
    if targets is None:
        table = table.drop(columns=["target"])
    return table.reset_index(drop=True)


def _number(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    return f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def _hours(value: object) -> str:
    """Hours to two decimals, a short run's to two significant digits (a tiny study's runs take seconds)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    hours = float(value)  # type: ignore[arg-type]
    if hours >= 0.01 or hours == 0:
        return f"{hours:,.2f}"
    return f"{hours:.2g}" if hours >= 0.0001 else "<0.0001"


def headline(table: pd.DataFrame, model: str, eval_set: str) -> str:
    """F1 / EM of ``model`` on ``eval_set``: its benchmark ``average`` row (mean ± std over seeds), else its
    only language's row, else ``-``."""
    part = table[(table["model"] == model) & (table["eval_set"] == eval_set)]
    if AVERAGE in set(part["language"]):
        part = part[part["language"] == AVERAGE]
    if len(part) != 1:
        return UNKNOWN
    r = part.iloc[0]
    return f"{mean_std(r.f1_mean, r.f1_std)} / {mean_std(r.em_mean, r.em_std)}"


def cost_markdown(
    table: pd.DataFrame, summary: pd.DataFrame, models: list[str], targets: dict[str, str] | None
) -> str:
    """A row per model: its target, F1 / EM on each eval set, then the cost of its pretraining and of its
    fine-tuning (hours, seconds per step, train tokens per second), its peak memory and the devices."""
    eval_sets = list(dict.fromkeys(table["eval_set"]))
    header = ["model", *(["target"] if targets is not None else []), *(f"{e} F1 / EM" for e in eval_sets)]
    for stage in STAGES.values():
        header += [f"{stage} h", f"{stage} s/step", f"{stage} tokens/s"]
    header += ["peak MB", "device"]
    named = 1 + (targets is not None)  # model (and target): text, then numbers, then the device
    align = ["---"] * named + ["---:"] * (len(header) - named - 1) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for model in models:
        mine = summary[summary["model"] == model]
        cells = [model, *([targets.get(model, UNKNOWN)] if targets is not None else [])]
        cells += [headline(table, model, e) for e in eval_sets]
        for stage in STAGES:
            hit = mine[mine["stage"] == stage]
            if hit.empty:
                cells += [NONE if stage == "pretrain" and not mine.empty else UNKNOWN] * 3
                continue
            r = hit.iloc[0]
            cells += [
                _hours(r.train_hours),
                _number(r.seconds_per_step, 3),
                _number(r.train_tokens_per_second, 0),
            ]
        cells += [_number(mine["peak_memory_mb"].max() if not mine.empty else None, 0),
                  _joined(mine["device"]) or UNKNOWN]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def cost_note(summary: pd.DataFrame) -> str:
    """What the cost columns measure (and a warning where runs ran on different devices)."""
    memory = _joined(summary["memory"]) or "unknown"
    text = (
        "Hours, seconds per step and train tokens per second (real, non-padding tokens) are means over each "
        "stage's runs (the fine-tuning seeds); peak MB is the largest over all of a model's runs "
        f"({memory}); `none`: the study did not pretrain that model; `-`: not recorded. Every number, per model "
        "and stage: `costs.csv`."
    )
    devices = set(summary["device"].dropna())
    if len(devices) > 1:
        kinds = ", ".join(sorted(devices))
        text += f" The runs ran on {len(devices)} kinds of device ({kinds}): compare within one."
    return text + "\n"
