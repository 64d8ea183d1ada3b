"""The report's figures (PNG): pretraining curves, F1 per language (long next to short) and F1 by answer
position and context length bucket."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from longify.report.load import AVERAGE

DPI = 110


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Save to a temporary name beside ``path`` and rename it into place."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _pyplot().close(fig)
    return path


def model_order(results: pd.DataFrame, pairs: list[tuple[str, str]]) -> list[str]:
    """Each short source right before its long model, then the other models in file order."""
    order: list[str] = []
    for long, short in pairs:
        order += [m for m in (short, long) if m not in order]
    return order + [m for m in dict.fromkeys(results["model"]) if m not in order]


def curves_plot(curves: pd.DataFrame, path: Path) -> Path | None:
    """Bits per masked token and pseudo bits per character against steps, one line per model (per run
    when a model was pretrained more than once)."""
    # bits per token is the eval loss (nats per masked token) / ln 2: rows without it get it from their loss
    curves = curves.assign(bits_per_token=curves["bits_per_token"].fillna(curves["loss"] / math.log(2)))
    labels = {
        "bits_per_token": "eval bits per masked token",
        "pseudo_bits_per_char": "pseudo bits per character",
    }
    panels = [(c, labels[c]) for c in labels if curves[c].notna().any()]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (column, title) in zip(axes[0], panels, strict=True):
        runs = curves.fillna({"job_id": ""}).groupby(["model", "job_id"], sort=False)
        several = curves.groupby("model")["job_id"].nunique()  # a model pretrained with several seeds
        for (model, job), part in runs:
            part = part.dropna(subset=[column]).sort_values("step")
            label = f"{model} ({job})" if several[model] > 1 else str(model)
            ax.plot(part["step"], part[column], marker="o", markersize=3, label=label)
        ax.set(title=f"pretraining: {title}", xlabel="optimizer step", ylabel=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def language_plot(table: pd.DataFrame, eval_set: str, models: list[str], path: Path) -> Path:
    """Grouped bars of F1 per language (the benchmark average last), error bars one std over seeds."""
    part = table[table["eval_set"] == eval_set]
    langs = list(dict.fromkeys(part["language"]))
    present = [m for m in models if m in set(part["model"])]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.3 * len(langs) * len(present) + 2)), 4.5))
    width = 0.8 / len(present)
    x = np.arange(len(langs))
    for i, model in enumerate(present):
        rows = part[part["model"] == model].set_index("language").reindex(langs)
        std = rows["f1_std"].fillna(0.0)
        ax.bar(x + (i - (len(present) - 1) / 2) * width, rows["f1_mean"], width, yerr=std, capsize=3,
               label=model)  # fmt: skip
    if AVERAGE in langs and len(langs) > 1:
        ax.axvline(len(langs) - 1.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, langs, rotation=45 if len(langs) > 8 else 0)
    ax.set(title=f"{eval_set}: F1 per language (mean ± std over seeds)", xlabel="language", ylabel="F1")
    ax.set_ylim(0, 115)  # room for the legend above full marks
    ax.legend(fontsize="small", ncol=min(len(present), 3))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def bucket_plot(buckets: pd.DataFrame, eval_set: str, models: list[str], path: Path) -> Path:
    """F1 by answer-position and context-length bucket (mean ± std over seeds), one line per model.

    ``buckets``: rows (model, seed, kind, bucket, low, f1) of one eval set."""
    plt = _pyplot()
    kinds = [("answer_position", "answer position (tokens)"), ("context_length", "context length (tokens)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    for ax, (kind, label) in zip(axes[0], kinds, strict=True):
        part = buckets[buckets["kind"] == kind]
        labels = list(part.sort_values("low")["bucket"].drop_duplicates())
        x = np.arange(len(labels))
        for model in (m for m in models if m in set(part["model"])):
            stats = part[part["model"] == model].groupby("bucket")["f1"].agg(["mean", "std"]).reindex(labels)
            ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3, label=model)
        ax.set_xticks(x, labels, rotation=30 if len(labels) > 5 else 0)
        ax.set(title=f"{eval_set}: F1 by {label.split(' (')[0]}", xlabel=label, ylabel="F1")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)
