"""``longify report STUDY_DIR [--out DIR]``: report.md with its tables (Markdown, CSV, LaTeX) and plots; the
target of each model where the study names targets, and the training cost beside F1 / EM where it recorded
costs (costs.csv)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from longify.artifacts import AVERAGE
from longify.errors import LongifyError
from longify.fileio import current_umask, write_failure
from longify.locks import output_lock, remove_dead_leftovers
from longify.outdir import staged_files
from longify.report import plots
from longify.report.bootstrap import LEVEL, MIN_RESAMPLES, RESAMPLES, SEED
from longify.report.compare import Row, compare, pairs_of
from longify.report.costs import cost_markdown, cost_note, cost_summary
from longify.report.load import load_analysis, load_costs, load_curves, load_results, resolve
from longify.report.markdown import report_markdown
from longify.report.tables import (
    UNKNOWN,
    bucket_summary,
    latex_table,
    model_targets,
    position_markdown,
    summarize,
)
from longify.textfiles import path_kind

# the report's own plot names: a rerun removes those it no longer writes (never other files)
OWN_PLOT = re.compile(r"pretraining\.png|f1_per_language_.+\.png|f1_by_bucket_.+\.png")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place (umask honoured)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise (write_failure(err, path) or err) from None


@contextmanager
def staged_report(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` to write the report into (``outdir.staged_files``): on success its
    files replace those of ``out`` (other files there stay); on any error it goes, with the folders made for
    ``out``, and a full disk names the file by its place in ``out``. What a killed run left is removed."""
    prefix = ".report.tmp-"
    with staged_files(
        out,
        prefix,
        lambda folder: remove_dead_leftovers(folder, prefix, lambda p: shutil.rmtree(p, ignore_errors=True)),
        lambda folder, tmp: _move_files(tmp, folder),
    ) as tmp:
        yield tmp


def _move_files(src: Path, dest: Path) -> None:
    """Rename every file under ``src`` to its place under ``dest`` (folders made as needed)."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


def remove_stale_plots(folder: Path, written: set[Path]) -> None:
    """Delete the report's own plots in ``folder`` that this run did not write (an eval set or the
    pretraining curves gone from the study)."""
    for path in sorted(folder.glob("*.png")):
        if OWN_PLOT.fullmatch(path.name) and path not in written:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                raise LongifyError(f"{path}: cannot remove this stale plot ({err.strerror})") from None


def bucket_rows(study_dir: Path, results: pd.DataFrame) -> pd.DataFrame:
    """(model, eval_set, seed, kind, bucket, low, f1, exact_match, count) from each evaluation's
    results.json analysis."""
    rows = []
    runs = results[results["results_path"].notna()].drop_duplicates(["model", "eval_set", "seed"])
    for r in runs.itertuples(index=False):
        origin = f"results_path of results.jsonl line {r.line}"
        analysis = load_analysis(resolve(study_dir, r.results_path), origin)
        for kind, buckets in (analysis or {}).items():
            for label, scores in buckets.items():
                low = int(label.split("-")[0])
                rows.append(
                    (
                        r.model,
                        r.eval_set,
                        r.seed,
                        kind,
                        label,
                        low,
                        *(scores[k] for k in ("exact_match", "f1", "count")),
                    )
                )
    columns = ["model", "eval_set", "seed", "kind", "bucket", "low", "exact_match", "f1", "count"]
    return pd.DataFrame(rows, columns=columns)


def comparisons_frame(rows: list[Row], targets: dict[str, str] | None = None) -> pd.DataFrame:
    """comparisons.csv: one row per comparison; with the long model's target after it where ``targets`` are
    given (a study that names them)."""
    out = []
    for r in rows:
        c = r.result
        out.append(
            {
                "model": r.model, "source_model": r.source_model, "eval_set": r.eval_set, "language": r.language,
                "delta_f1": c and c.f1.delta, "f1_low": c and c.f1.low, "f1_high": c and c.f1.high,
                "delta_em": c and c.exact_match.delta, "em_low": c and c.exact_match.low,
                "em_high": c and c.exact_match.high, "questions": c and c.questions, "pairs": c and c.pairs,
                "seeds": c and c.seeds, "seeds_used": " ".join(map(str, r.seeds_used)),
                "seeds_left_out": "; ".join(f"{m}: {' '.join(map(str, s))}" for m, s in r.left_out),
                "note": r.note or ("" if c else "no common questions"),
            }
        )  # fmt: skip
    frame = pd.DataFrame(out)
    if targets is not None and out:
        frame.insert(1, "target", [targets.get(r.model, UNKNOWN) for r in rows])
    return frame


def build_report(
    study_dir: str | Path,
    out: str | Path | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Path:
    """Read STUDY_DIR's result files and write ``report.md``, ``results.csv``, ``tables.tex``,
    ``comparisons.csv``, ``buckets.csv``, ``costs.csv`` (a study with costs) and ``plots/*.png`` into ``out``
    (default STUDY_DIR/report), and removes the report's own plots an earlier run wrote that this one does
    not; returns report.md. Holds
    ``out``'s lock (``longify.locks``): a report into a folder another process holds, or lies in, is refused."""
    study = Path(study_dir)
    kind = path_kind(study)
    if kind != "dir":
        raise LongifyError(
            f"{study}: {'no such folder' if kind is None else 'not a folder'} (a study's output_dir)"
        )
    if resamples < MIN_RESAMPLES:
        raise LongifyError(
            f"--resamples {resamples}: must be at least {MIN_RESAMPLES} (a 95% percentile interval needs "
            "enough resamples in its tails)"
        )
    out = Path(out) if out is not None else study / "report"
    with output_lock(out):  # before any long work: a second report into OUT is refused, not raced
        return _write_report(study, out, resamples, seed)


def _write_report(study: Path, out: Path, resamples: int, seed: int) -> Path:
    """``build_report`` once ``out`` is locked."""
    results = load_results(study)
    table = summarize(results)
    pairs = pairs_of(results)
    comparisons = compare(study, results, resamples=resamples, seed=seed)
    curves = load_curves(study)
    models = plots.model_order(results, pairs)
    targets = model_targets(results)
    buckets = bucket_summary(bucket_rows(study, results), models, targets)
    costs = load_costs(study)
    spent = None if costs is None else cost_summary(costs, models, targets)

    with staged_report(out) as tmp:  # a failure (a full disk) leaves OUT as it was
        (tmp / "plots").mkdir()
        figures: dict[str, Path] = {}
        if curves is not None and (path := plots.curves_plot(curves, tmp / "plots" / "pretraining.png")):
            figures["pretraining"] = path
        for eval_set in dict.fromkeys(table["eval_set"]):
            path = tmp / "plots" / f"f1_per_language_{slug(eval_set)}.png"
            figures[f"languages:{eval_set}"] = plots.language_plot(table, eval_set, models, path)
            part = buckets[buckets["eval_set"] == eval_set]
            if not part.empty:
                path = tmp / "plots" / f"f1_by_bucket_{slug(eval_set)}.png"
                figures[f"buckets:{eval_set}"] = plots.bucket_plot(part, eval_set, models, path, targets)

        write_text(tmp / "results.csv", table.to_csv(index=False, float_format="%.4f"))
        write_text(
            tmp / "tables.tex", "\n".join(latex_table(table, e) for e in dict.fromkeys(table["eval_set"]))
        )
        comparison_table = comparisons_frame(comparisons, targets)
        write_text(tmp / "comparisons.csv", comparison_table.to_csv(index=False, float_format="%.4f"))
        write_text(tmp / "buckets.csv", buckets.to_csv(index=False, float_format="%.4f"))
        cost = None
        if spent is not None:
            write_text(tmp / "costs.csv", spent.to_csv(index=False, float_format="%.4f"))
            cost = cost_note(spent) + "\n" + cost_markdown(table, spent, models, targets)
        positions = None
        if targets is not None:
            positions = {e: position_markdown(buckets, e, targets) for e in dict.fromkeys(table["eval_set"])}
        text = report_markdown(
            study, table, comparisons, figures, tmp, resamples=resamples, seed=seed, level=LEVEL,
            has_average=bool((results["language"] == AVERAGE).any()), positions=positions, cost=cost,
            targets=targets,
        )  # fmt: skip
        write_text(tmp / "report.md", text)
    remove_stale_plots(out / "plots", {out / p.relative_to(tmp) for p in figures.values()})
    return out / "report.md"
