"""``longify demo``: the demo study (``demo/study.yaml``, printed by ``longify demo --print-spec``) run with
``study run`` and written up with ``report``, offline on the shipped data.

One progress line per job on the console; each job's own output (HF load reports, per-step logs) goes to
its ``log.txt``. The study's folders live in ``OUT`` (``OUT/jobs``, ``OUT/results.jsonl``) and the report in
``OUT/report``. A rerun skips the finished jobs, so the same command twice changes nothing.
"""

from __future__ import annotations

import csv
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from longify.artifacts import AVERAGE, CONVERSION_FILE, PRETRAIN_METRICS_FILE, read_pretrain_metrics
from longify.demo.files import claim_output
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import output_lock
from longify.report.bootstrap import LEVEL
from longify.report.compare import POOLED
from longify.runinfo import library_versions
from longify.study.commands import execute_study
from longify.study.jobs import Job, plan_jobs
from longify.study.runner import cores
from longify.study.spec import load_spec


def demo_spec_path() -> Path:
    """The demo study's spec as shipped in the package."""
    return Path(str(resources.files("longify.demo") / "study.yaml"))


def demo_parallel() -> int:
    """Jobs the demo runs side by side: two where there are two cores or more (its jobs are small models, which
    one thread runs almost as fast as two: two jobs on a core each nearly halve the demo's time)."""
    return min(2, cores())


def run_demo_study(
    out: str | Path = "demo-output",
    *,
    spec: str | Path | None = None,
    overwrite: bool = False,
    parallel: int | None = None,
) -> dict[str, Any]:
    """Run the demo study into ``out`` (refusing a non-empty folder it did not make, unless ``overwrite``),
    ``parallel`` jobs side by side (None: two where there are two cores or more, each on its share), build its
    report in ``out/report``, print and return the summary (also ``out/summary.json``)."""
    from longify.report import build_report  # reads files only

    out = Path(out).absolute()  # the study's own output_dir is absolute too
    t0 = time.perf_counter()
    with output_lock(out):
        claim_output(out, overwrite)
        study = load_spec(spec or demo_spec_path(), out)
        jobs = plan_jobs(study)
        counts = execute_study(study, jobs, parallel=parallel or demo_parallel())
        failed = counts.get("failed", 0) + counts.get("skipped", 0)
        if failed:
            raise LongifyError(
                f"demo: {failed} of {len(jobs)} jobs failed or were skipped; "
                f"`longify study status {study.path} --output_dir {out}` lists them, each job's log.txt says why"
            )
        report = build_report(out, out / "report")
        summary = demo_summary(out, jobs, report, seconds=time.perf_counter() - t0)
        write_json_atomic(out / "summary.json", summary)
    print(format_summary(summary), flush=True)
    return summary


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def demo_summary(out: Path, jobs: list[Job], report: Path, *, seconds: float) -> dict[str, Any]:
    """What each stage produced, read back from the jobs' and the report's files."""
    converts = [
        {**_json(j.output(out) / CONVERSION_FILE), "model": j.model} for j in jobs if j.stage == "convert"
    ]
    pretrains = [
        {**read_pretrain_metrics(j.output(out) / PRETRAIN_METRICS_FILE), "model": j.model}
        for j in jobs
        if j.stage == "pretrain"
    ]
    table = [r for r in _csv(report.parent / "results.csv") if r["language"] == AVERAGE]
    comparisons = headline_comparisons(_csv(report.parent / "comparisons.csv"))
    return {
        "study_dir": str(out),
        "report": str(report),
        "plots": sorted(p.name for p in (report.parent / "plots").glob("*.png")),
        "convert": [
            {
                "model": c["model"],
                "source_positions": c["source_max_len"],
                "positions": c["max_pos"],
                "attention_window": c["attention_window"],
                "verification": c["verification"],
            }
            for c in converts
        ],
        "pretrain": [
            {"model": p["model"], "steps": p.get("steps"), "initial": p["initial"], "final": p["final"]}
            for p in pretrains
        ],
        "qa": table,
        "long_vs_short": comparisons,
        "seconds": round(seconds, 1),
        "versions": library_versions(),
    }


def headline_comparisons(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Per (model, eval set): the pooled row where there are several languages, else the one language."""
    by_pair: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        by_pair.setdefault((r["model"], r["eval_set"]), []).append(r)
    return [
        next((r for r in group if r["language"] == POOLED), group[0]) if len(group) > 1 else group[0]
        for group in by_pair.values()
    ]


def format_summary(s: dict[str, Any]) -> str:
    lines = ["longify demo: summary"]
    for c in s["convert"]:
        v = c["verification"] or {}
        check = (
            f"max |diff| vs source: hidden {v['max_abs_diff_hidden']:.1e} on {v['tokens_compared']} tokens "
            f"({'ok' if v['passed'] else 'FAILED'})"
            if v
            else "not verified"
        )
        lines.append(
            f"  convert  {c['model']}: {c['source_positions']} -> {c['positions']} positions, {check}"
        )
    for p in s["pretrain"]:
        first, last = p["initial"], p["final"]
        lines.append(
            f"  pretrain {p['model']}, {last.get('step', p.get('steps'))} steps: eval loss {first['loss']:.3f} -> "
            f"{last['loss']:.3f}, pseudo bits/char {first['pseudo_bits_per_char']:.3f} -> "
            f"{last['pseudo_bits_per_char']:.3f}"
        )
    lines.append("  qa       F1 (mean ± std over seeds; EM in the report):")
    for r in s["qa"]:
        std = f" ± {float(r['f1_std']):.1f}" if r["f1_std"] else ""
        lines.append(
            f"           {r['eval_set']:<10} {r['model']:<24} {float(r['f1_mean']):5.1f}{std}  "
            f"({r['seeds']} seeds, {r['questions']} questions)"
        )
    for c in s["long_vs_short"]:
        if c["delta_f1"]:
            lines.append(
                f"  long - short  {c['eval_set']:<10} {c['model']} vs {c['source_model']}: F1 "
                f"{float(c['delta_f1']):+.1f} [{float(c['f1_low']):+.1f}, {float(c['f1_high']):+.1f}] "
                f"({LEVEL:.0%} paired bootstrap over questions)"
            )
    lines.append(f"  report   {s['report']} ({len(s['plots'])} plots); total {s['seconds']:.0f} s")
    return "\n".join(lines)
