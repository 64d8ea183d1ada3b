"""The report's figures (PNG): pretraining curves, F1 per language (long next to short) and F1 by answer
position and context length bucket (coloured by target where the study names targets)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longify.artifacts import AVERAGE
from longify.fileio import write_failure

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
    except Exception as err:  # a full disk names the plot (matplotlib's error names no file)
        raise (write_failure(err, path) or err) from None
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


def seed_label(model: str, seeds: pd.Series) -> str:
    """The legend label of ``model`` (``seeds``: its number of seeds per language or bucket, NaN where it
    has none): says where it has a single seed, drawn without an error bar as one run has no spread."""
    seeds = seeds.dropna()
    single = [str(k) for k in seeds.index[seeds == 1]]
    if not single:
        return model
    if len(single) == len(seeds):
        return f"{model} (1 seed)"
    return f"{model} (1 seed: {', '.join(single)})"


def _seed_spread(ax: Any, x: np.ndarray, stats: pd.DataFrame, color: Any) -> None:
    """Error bars of one std over seeds at ``x``, only where ``stats`` has more than one seed."""
    spread = (stats["seeds"] > 1).to_numpy()
    if spread.any():
        ax.errorbar(x[spread], stats["f1_mean"][spread], yerr=stats["f1_std"][spread], fmt="none",
                    ecolor=color, capsize=3)  # fmt: skip


def language_plot(table: pd.DataFrame, eval_set: str, models: list[str], path: Path) -> Path:
    """Grouped bars of F1 per language (the benchmark average last), error bars one std over seeds (none
    for a single seed)."""
    part = table[table["eval_set"] == eval_set]
    langs = list(dict.fromkeys(part["language"]))
    present = [m for m in models if m in set(part["model"])]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.3 * len(langs) * len(present) + 2)), 4.5))
    width = 0.8 / len(present)
    x = np.arange(len(langs))
    for i, model in enumerate(present):
        rows = part[part["model"] == model].set_index("language").reindex(langs)
        at = x + (i - (len(present) - 1) / 2) * width
        label = seed_label(model, rows["seeds"])
        ax.bar(at, rows["f1_mean"], width, label=label)
        _seed_spread(ax, at, rows, "black")
    if AVERAGE in langs and len(langs) > 1:
        ax.axvline(len(langs) - 1.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, langs, rotation=45 if len(langs) > 8 else 0)
    ax.set(title=f"{eval_set}: F1 per language (mean ± std over seeds)", xlabel="language", ylabel="F1")
    ax.set_ylim(0, 115)  # room for the legend above full marks
    ax.legend(fontsize="small", ncol=min(len(present), 3))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _bucket_tick(label: str, counts: list[int | None]) -> str:
    """A bucket's tick label with its number of examples, per model (legend order) where they differ."""
    known = list(dict.fromkeys(str(c) for c in counts if c is not None))
    if not known:
        return label
    return f"{label}\nn={known[0]}" if len(known) == 1 else f"{label}\nn={'/'.join(map(str, counts))}"


# a colour per target (the same in every plot), then the cycle's next ones for other targets
TARGET_COLORS = {"short": "black", "longformer": "tab:blue", "full": "tab:orange", "bigbird": "tab:green"}
OTHER_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
LEGEND_INSIDE = 4  # more models than this (in a plot coloured by target): one legend beside the panels


def target_styles(models: list[str], targets: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Line style of each model: its target's colour, and a dash and marker per model of the same target
    (in ``models`` order, so a source's conversions to each target share a dash), labelled ``model
    (target)``."""
    colors = dict(TARGET_COLORS)
    seen: dict[str, int] = {}
    styles = {}
    for model in models:
        target = targets.get(model, "-")
        if target not in colors:
            colors[target] = OTHER_COLORS[(len(colors) - len(TARGET_COLORS)) % len(OTHER_COLORS)]
        i = seen[target] = seen.get(target, -1) + 1
        styles[model] = {"color": colors[target], "linestyle": LINESTYLES[i % len(LINESTYLES)],
                         "marker": MARKERS[i % len(MARKERS)], "label": f"{model} ({target})"}  # fmt: skip
    return styles


def bucket_plot(
    summary: pd.DataFrame, eval_set: str, models: list[str], path: Path, targets: dict[str, str] | None = None
) -> Path:
    """F1 by answer-position and context-length bucket (mean ± std over seeds; no error bar for a single
    seed), one line per model, coloured by target where ``targets`` are given; each bucket's label says how
    many examples it holds (n).

    ``summary``: ``tables.bucket_summary`` rows of one eval set."""
    plt = _pyplot()
    kinds = [("answer_position", "answer position (tokens)"), ("context_length", "context length (tokens)")]
    outside = targets is not None and summary["model"].nunique() > LEGEND_INSIDE  # one legend, to the right
    fig, axes = plt.subplots(1, 2, figsize=(15 if outside else 11, 4.4), squeeze=False)
    for ax, (kind, label) in zip(axes[0], kinds, strict=True):
        part = summary[summary["kind"] == kind]
        labels = list(part.sort_values("low")["bucket"].drop_duplicates())
        x = np.arange(len(labels))
        present = [m for m in models if m in set(part["model"])]
        styles = target_styles(present, targets) if targets is not None else {}
        counts: dict[str, list[int | None]] = {b: [] for b in labels}
        for model in present:
            stats = part[part["model"] == model].set_index("bucket").reindex(labels)
            for b, n in zip(labels, stats["n"], strict=True):
                counts[b].append(None if pd.isna(n) else int(n))
            style = styles.get(model, {"marker": "o", "label": model})
            name = seed_label(style["label"], stats["seeds"])
            (line,) = ax.plot(x, stats["f1_mean"], **{**style, "label": name})
            _seed_spread(ax, x, stats, line.get_color())
        ticks = [_bucket_tick(b, counts[b]) for b in labels]
        ax.set_xticks(x, ticks, rotation=30 if len(labels) > 5 else 0, multialignment="center")
        differ = any(len({c for c in counts[b] if c is not None}) > 1 for b in labels)
        xlabel = label + ("; n per model in legend order" if differ else "")
        by = " per target" if targets is not None else ""
        ax.set(title=f"{eval_set}: F1 by {label.split(' (')[0]}{by}", xlabel=xlabel, ylabel="F1")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if not outside:
            ax.legend(fontsize="small")
        elif kind == kinds[-1][0]:
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)
