"""`longify demo` runs the demo study and its report; the demo study learns (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from longify.cli import main
from longify.demo.study import demo_spec_path, run_demo_study
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec


def small_demo_spec(tmp_path: Path) -> Path:
    """The shipped demo spec with every stage cut to seconds (its models and targets, 2 seeds; the dev set
    only: each job is a process, seconds of start-up)."""
    spec = yaml.safe_load(demo_spec_path().read_text(encoding="utf-8"))
    spec["prepare"]["data"].update(n_train=8, n_dev=8)
    spec["prepare"]["source"]["steps"] = 10
    for name in ("demo-roberta-1024", "demo-roberta-1024-full"):
        spec["models"][name]["pretrain"].update(max_steps=2, eval_steps=1, save_steps=2, logging_steps=1)
    spec["finetune"]["num_train_epochs"] = 1.0
    spec["evaluate"] = {"dev": spec["evaluate"]["dev"]}
    path = tmp_path / "demo-small.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_demo_runs_the_study_and_its_report(tmp_path, capsys, monkeypatch) -> None:
    """`longify demo`: every job of the demo study, one progress line each, then the report (plots, mean ± std
    over 2 seeds) and a summary; the same command again redoes nothing and prints the same numbers."""
    out = tmp_path / "out"
    monkeypatch.chdir(
        tmp_path
    )  # a relative --out, as `make demo` gives: results.jsonl's paths resolved twice
    spec = small_demo_spec(tmp_path)
    argv = ["demo", "--out", "out", "--spec", str(spec)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    jobs = len(plan_jobs(load_spec(spec, out)))
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(progress) == jobs == 18 and all(" done " in line for line in progress), printed
    assert (
        "{'loss'" not in printed and "UNEXPECTED" not in printed
    )  # per-step dicts and load reports: job logs
    assert "longify demo: summary" in printed and "report.md" in printed

    summary = json.loads((out / "summary.json").read_text())
    report = Path(summary["report"])
    assert report == out / "report" / "report.md" and report.is_file()
    plots = sorted((out / "report" / "plots").glob("*.png"))
    assert len(plots) >= 3 and all(p.stat().st_size > 10_000 for p in plots), plots
    assert all(f"plots/{p.name}" in report.read_text() for p in plots)
    assert summary["convert"][0]["verification"]["passed"]
    table = pd.read_csv(out / "report" / "results.csv")
    assert set(table["seeds"]) == {2} and table["f1_std"].notna().all()
    assert set(zip(table["model"], table["target"], strict=True)) == {
        ("demo-roberta", "short"),
        ("demo-roberta-1024", "longformer"),
        ("demo-roberta-1024-full", "full"),
    }
    costs = pd.read_csv(out / "report" / "costs.csv")
    assert set(costs["model"]) >= {"demo-roberta-1024", "demo-roberta-1024-full"}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in table.itertuples():  # mean over the two seeds, recomputed from the jobs' rows
        f1 = [
            x["f1"]
            for x in rows
            if (x["model"], x["eval_set"], x["language"]) == (r.model, r.eval_set, r.language)
        ]
        assert len(f1) == 2 and r.f1_mean == pytest.approx(sum(f1) / 2, abs=1e-4)
    assert "±" in report.read_text()

    before = {p: p.stat().st_mtime_ns for p in (out / "jobs").rglob("*") if p.is_file()}
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("done (earlier)") == jobs
    assert {p: p.stat().st_mtime_ns for p in (out / "jobs").rglob("*") if p.is_file()} == before
    assert json.loads((out / "summary.json").read_text())["qa"] == summary["qa"]


@pytest.mark.slow
def test_demo_study_learns(tmp_path) -> None:
    """The full demo: pretraining lowers the loss and fine-tuned QA is well above chance for both models."""
    summary = run_demo_study(tmp_path)
    (lm,) = summary["pretrain"]
    assert lm["final"]["loss"] < lm["initial"]["loss"]
    assert all(float(r["f1_mean"]) > 20 for r in summary["qa"]), summary["qa"]
