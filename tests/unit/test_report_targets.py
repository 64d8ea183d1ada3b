"""longify report across long targets: a ``target`` column (row, in the pivoted tables; the long model's in
the long-vs-short comparisons) where results.jsonl names targets, F1 by answer position per target, and each
model's training cost beside its F1 / EM from costs.jsonl ("-" where a cost is unknown); a study without
targets or costs reports byte for byte as before (tests/fixtures/report_old_study: the report of
``make_study`` as longify wrote it before targets)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, SEEDS, bucket_f1, make_study, write_jsonl
from longify.errors import LongifyError
from longify.report import build_report

GOLDEN = REPO / "tests" / "fixtures" / "report_old_study"
TARGETS = {"short": "short", "long": "longformer", "long-full": "full"}
NULL_COST = dict.fromkeys(
    ("train_seconds", "steps", "seconds_per_step", "train_tokens", "train_tokens_per_second", "peak_memory_mb",
     "memory", "device")
)  # fmt: skip


def _cost(seconds: float, per_step: float, tokens: float, peak: float) -> dict[str, Any]:
    return {**NULL_COST, "train_seconds": seconds, "steps": 100, "seconds_per_step": per_step,
            "train_tokens": int(tokens * seconds), "train_tokens_per_second": tokens, "peak_memory_mb": peak,
            "memory": "cpu max rss", "device": "cpu-AVX2"}  # fmt: skip


COSTS = [
    {"model": "long", "stage": "pretrain", "seed": None, "job_id": "p", **_cost(7200.0, 72.0, 56.9, 2048.0)},
    {"model": "long", "stage": "train", "seed": 1, "job_id": "t1", **_cost(1800.0, 1.5, 1000.0, 1500.0)},
    {"model": "long", "stage": "train", "seed": 2, "job_id": "t2", **_cost(3600.0, 2.5, 2000.0, 1600.0)},
    {"model": "long-full", "stage": "pretrain", "seed": None, "job_id": "pf", **NULL_COST},  # not recorded
    {"model": "long-full", "stage": "train", "seed": 1, "job_id": "tf1", **_cost(900.0, 1.0, 4000.0, 3000.0)},
    {"model": "short", "stage": "train", "seed": 1, "job_id": "ts1", **_cost(360.0, 0.5, 3000.0, 900.0)},
    {"model": "short", "stage": "train", "seed": 2, "job_id": "ts2", **NULL_COST},
]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_target_study(root: Path, *, targets: bool = True, costs: bool = True) -> Path:
    """``make_study`` plus ``long-full`` (the long model's scores, its answer-position F1 5 points lower),
    with each model's target in results.jsonl and the runs' costs in costs.jsonl."""
    make_study(root)
    rows = _rows(root / "results.jsonl")
    for seed in SEEDS:
        src, dest = root / "jobs" / f"eval-long-{seed}", root / "jobs" / f"eval-long-full-{seed}"
        shutil.copytree(src, dest)
        results = json.loads((dest / "results.json").read_text())
        for bucket in results["analysis"]["answer_position"].values():
            bucket["f1"] -= 5.0
        (dest / "results.json").write_text(json.dumps(results))
    full = [
        {**r, "model": "long-full", "job_id": f"f{r['seed']}",
         **{k: r[k].replace("eval-long-", "eval-long-full-") for k in ("results_path", "question_scores_path")}}
        for r in rows
        if r["model"] == "long"
    ]  # fmt: skip
    rows = [*rows, *full]
    if targets:
        rows = [{**r, "target": TARGETS[r["model"]]} for r in rows]
    write_jsonl(root / "results.jsonl", rows)
    if costs:
        write_jsonl(root / "costs.jsonl", COSTS)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_target_study(tmp_path_factory.mktemp("targets") / "study")
    return build_report(root, resamples=1000)


def test_a_study_without_targets_or_costs_reports_byte_for_byte_as_before(tmp_path: Path) -> None:
    root = tmp_path / "study"
    root.mkdir()
    make_study(root)
    out = build_report(root, resamples=2000).parent
    for name in ("report.md", "results.csv", "tables.tex", "comparisons.csv", "buckets.csv"):
        text = (out / name).read_text(encoding="utf-8").replace(str(root), "STUDY")
        assert text == (GOLDEN / name).read_text(encoding="utf-8"), name
    plots = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "plots").glob("*.png"))
    }
    assert plots == json.loads((GOLDEN / "plots.sha256.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(p.name for p in GOLDEN.iterdir() if p.suffix != ".json"), "plots"]
    )


def test_every_results_table_names_each_models_target(report: Path) -> None:
    table = pd.read_csv(report.parent / "results.csv")
    assert list(table.columns[:4]) == ["eval_set", "language", "model", "target"]
    assert dict(zip(table["model"], table["target"], strict=True)) == TARGETS
    lines = report.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| language |"))
    assert lines[header] == "| language | short | long | long-full | questions |"
    assert lines[header + 2] == "| target | short | longformer | full |  |"  # the first row, under the names
    assert "target & short & longformer & full &  \\\\" in (report.parent / "tables.tex").read_text()


def test_f1_by_answer_position_is_given_per_target(report: Path) -> None:
    buckets = pd.read_csv(report.parent / "buckets.csv")
    assert list(buckets.columns[:3]) == ["eval_set", "model", "target"]
    assert dict(zip(buckets["model"], buckets["target"], strict=True)) == TARGETS
    text = report.read_text()
    assert "| model | target | 0-511 | 512-1023 | 1024-1535 |" in text
    start = text.index("| model | target | 0-511")
    rows = text[start:].split("\n\n")[0].splitlines()[2:]
    assert [r.split(" | ")[1] for r in rows] == [
        "short",
        "longformer",
        "full",
    ]  # grouped by target, short first
    long_f1 = [bucket_f1("long", 512, s) for s in SEEDS]
    cell = f"{np.mean(long_f1):.1f} ± {np.std(long_f1, ddof=1):.1f} (n=4)"
    assert cell in rows[1] and f"{np.mean(long_f1) - 5:.1f} ± " in rows[2]
    assert (report.parent / "plots" / "f1_by_bucket_xquad.png").is_file()


def test_each_long_vs_short_comparison_names_the_long_models_target(report: Path) -> None:
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert list(comparisons.columns[:3]) == ["model", "target", "source_model"]
    assert dict(zip(comparisons["model"], comparisons["target"], strict=False)) == {
        "long": "longformer", "long-full": "full",
    }  # fmt: skip
    section = report.read_text().split("## Long vs short")[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| long model | target | short source | eval set | language | Δ F1 [95% CI] |")
    assert lines[1] == "|---|---|---|---|---|---:|---:|---:|---:|---|"
    rows = [line.split(" | ")[:3] for line in lines[2:]]
    assert {(model[2:], target, source) for model, target, source in rows} == {
        ("long", "longformer", "short"), ("long-full", "full", "short"),
    }  # fmt: skip


def test_the_training_cost_stands_beside_f1_and_em(report: Path) -> None:
    text = report.read_text()
    assert "## Accuracy and cost" in text
    header = ("| model | target | xquad F1 / EM | pretrain h | pretrain s/step | pretrain tokens/s | "
              "fine-tune h | fine-tune s/step | fine-tune tokens/s | peak MB | device |")  # fmt: skip
    assert header in text
    section = text.split("## Accuracy and cost")[1].split("## Long vs short")[0]
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ") for line in section.splitlines() if line.startswith("| ")
    }
    # long: pretraining 2 h at 72 s/step; fine-tuning 0.5 h and 1 h (mean 0.75), 1.5 and 2.5 s/step (2)
    assert rows["long"][3:] == ["2.00", "72.000", "57", "0.75", "2.000", "1,500", "2,048", "cpu-AVX2 |"]
    assert rows["long-full"][3:6] == ["-", "-", "-"]  # pretrained, its cost not recorded
    assert rows["short"][3:6] == ["none", "none", "none"]  # not pretrained in the study
    assert rows["short"][6:9] == ["0.10", "0.500", "3,000"]  # the seed without a cost is left out of the mean
    f1 = table_headline(report, "long")
    assert rows["long"][2] == f1
    costs = pd.read_csv(report.parent / "costs.csv")
    assert list(costs[["model", "stage"]].itertuples(index=False, name=None)) == [
        ("short", "train"), ("long", "pretrain"), ("long", "train"), ("long-full", "pretrain"),
        ("long-full", "train"),
    ]  # fmt: skip
    long_train = costs[(costs["model"] == "long") & (costs["stage"] == "train")].iloc[0]
    assert (long_train["runs"], long_train["train_hours"], long_train["peak_memory_mb"]) == (2, 0.75, 1600.0)


def table_headline(report: Path, model: str) -> str:
    """The model's ``average`` F1 / EM cell of the results table."""
    table = pd.read_csv(report.parent / "results.csv")
    r = table[(table["model"] == model) & (table["language"] == "average")].iloc[0]
    return f"{r.f1_mean:.1f} ± {r.f1_std:.1f} / {r.em_mean:.1f} ± {r.em_std:.1f}"


def test_costs_without_targets_and_targets_without_costs(tmp_path: Path) -> None:
    text = build_report(make_target_study(tmp_path / "a", targets=False), resamples=1000).read_text()
    assert "| model | xquad F1 / EM | pretrain h |" in text and "| target |" not in text
    text = build_report(make_target_study(tmp_path / "b", costs=False), resamples=1000).read_text()
    assert "| target | short | longformer | full |" in text and "Accuracy and cost" not in text


def test_a_malformed_cost_row_is_one_line_naming_the_file_line_and_field(tmp_path: Path) -> None:
    root = make_target_study(tmp_path / "study")
    write_jsonl(root / "costs.jsonl", [COSTS[0], {**COSTS[1], "seconds_per_step": "slow"}])
    with pytest.raises(
        LongifyError, match=r"costs.jsonl: line 2: field 'seconds_per_step' must be a number or null"
    ):
        build_report(root, resamples=1000)


def test_costs_that_were_never_recorded_show_as_dashes(tmp_path: Path) -> None:
    root = make_target_study(tmp_path / "study")
    write_jsonl(root / "costs.jsonl", [{**c, **NULL_COST} for c in COSTS])
    text = build_report(root, resamples=1000).read_text()
    section = text.split("## Accuracy and cost")[1].split("## Long vs short")[0]
    long_row = next(line for line in section.splitlines() if line.startswith("| long |"))
    assert long_row.split(" | ")[3:] == ["-"] * 7 + ["- |"]
