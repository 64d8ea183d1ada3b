"""longify report: tables recomputed by hand, the paired bootstrap on cases with known answers, plots, and
one-line errors for missing or malformed files (a synthetic study folder written here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from longify.cli import main
from longify.report import build_report
from longify.report.bootstrap import pair_scores, paired_bootstrap

SEEDS = (1, 2)
LANGS = ("de", "en")
QUESTIONS = 30


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_study(root: Path, scores: dict[tuple[str, int], np.ndarray] | None = None) -> dict[str, Any]:
    """Two models (short, and long converted from it), 2 seeds, 2 languages, QUESTIONS questions each.

    ``scores[(model, seed)]``: per-question F1 in [0, 1], shape (languages, questions); EM is F1 == 1.
    Returns the per-language percentages written to results.jsonl: {(model, lang, seed): (f1, em)}."""
    rng = np.random.default_rng(7)
    if scores is None:
        scores = {
            (m, s): np.round(rng.uniform(size=(len(LANGS), QUESTIONS)) ** (0.5 if m == "long" else 1.0), 2)
            for m in ("short", "long")
            for s in SEEDS
        }
    written: dict[tuple[str, str, int], tuple[float, float]] = {}
    rows = []
    for (model, seed), f1 in scores.items():
        job = root / "jobs" / f"eval-{model}-{seed}"
        qs = [
            {"id": f"q{i}", "language": lang, "exact_match": float(f1[li, i] == 1.0), "f1": float(f1[li, i])}
            for li, lang in enumerate(LANGS)
            for i in range(QUESTIONS)
        ]
        _jsonl(job / "question_scores.jsonl", qs)
        analysis = {
            kind: {f"{lo}-{lo + 511}": {"exact_match": 0.0, "f1": 40.0 + lo / (64 if model == "long" else -64) + seed, "count": 3}
                   for lo in (0, 512, 1024)}
            for kind in ("answer_position", "context_length")
        }  # fmt: skip
        (job / "results.json").write_text(json.dumps({"analysis": {"bucket_width": 512, **analysis}}))
        base = {"model": model, "source_model": "short" if model == "long" else None, "eval_set": "xquad",
                "task": "xquad", "seed": seed, "job_id": f"e{model}{seed}",
                "results_path": f"jobs/eval-{model}-{seed}/results.json", "predictions_path": None,
                "question_scores_path": f"jobs/eval-{model}-{seed}/question_scores.jsonl"}  # fmt: skip
        per_lang = []
        for li, lang in enumerate(LANGS):
            f1_pct, em_pct = 100 * f1[li].mean(), 100 * (f1[li] == 1.0).mean()
            written[(model, lang, seed)] = (f1_pct, em_pct)
            per_lang.append((f1_pct, em_pct))
            rows.append({**base, "language": lang, "exact_match": em_pct, "f1": f1_pct, "total": QUESTIONS})
        avg = np.mean(per_lang, axis=0)
        written[(model, "average", seed)] = (avg[0], avg[1])
        rows.append(
            {**base, "language": "average", "exact_match": avg[1], "f1": avg[0], "total": 2 * QUESTIONS}
        )
    _jsonl(root / "results.jsonl", rows)
    curves = [
        {"model": "long", "step": step, "loss": 5.0 - step / 50, "bits_per_token": (5.0 - step / 50) / np.log(2),
         "pseudo_bits_per_char": 2.0 - step / 200, "job_id": "p"}
        for step in range(0, 101, 20)
    ]  # fmt: skip
    _jsonl(root / "pretrain_curves.jsonl", curves)
    return {"written": written, "scores": scores}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("study")
    made = make_study(root)
    return root, made, build_report(root, resamples=2000)


def test_table_numbers_recomputed_by_hand(study: tuple[Path, dict[str, Any], Path]) -> None:
    _, made, report = study
    table = pd.read_csv(report.parent / "results.csv")
    assert len(table) == 2 * (len(LANGS) + 1)
    for (model, lang), _ in {(m, lg): 0 for (m, lg, _) in made["written"]}.items():
        f1 = np.array([made["written"][(model, lang, s)][0] for s in SEEDS])
        em = np.array([made["written"][(model, lang, s)][1] for s in SEEDS])
        row = table[(table["model"] == model) & (table["language"] == lang)].iloc[0]
        assert row["f1_mean"] == pytest.approx(f1.sum() / 2, abs=1e-4)
        assert row["f1_std"] == pytest.approx(abs(f1[0] - f1[1]) / np.sqrt(2), abs=1e-4)  # ddof=1, two seeds
        assert row["em_mean"] == pytest.approx(em.sum() / 2, abs=1e-4)
        assert row["seeds"] == 2
        assert row["questions"] == (2 * QUESTIONS if lang == "average" else QUESTIONS)
    # the Markdown and LaTeX cells show the same numbers, and the average row comes last
    text = report.read_text()
    f1 = [made["written"][("long", "en", s)][0] for s in SEEDS]
    cell = f"{np.mean(f1):.1f} ± {np.std(f1, ddof=1):.1f}"
    assert cell in text
    assert cell.replace(" ± ", " $\\pm$ ") in (report.parent / "tables.tex").read_text()
    assert list(table[table["model"] == "short"]["language"]) == [*LANGS, "average"]


def test_comparison_delta_and_interval(study: tuple[Path, dict[str, Any], Path]) -> None:
    _, made, report = study
    comp = pd.read_csv(report.parent / "comparisons.csv")
    row = comp[comp["language"] == "en"].iloc[0]
    li = LANGS.index("en")
    diffs = np.concatenate(
        [made["scores"][("long", s)][li] - made["scores"][("short", s)][li] for s in SEEDS]
    )
    assert row["delta_f1"] == pytest.approx(100 * diffs.mean(), abs=1e-4)
    assert row["f1_low"] < row["delta_f1"] < row["f1_high"]
    assert (row["pairs"], row["questions"], row["seeds"]) == (2 * QUESTIONS, QUESTIONS, 2)
    assert "paired bootstrap over questions" in report.read_text() and "2000 resamples" in report.read_text()


def _frame(f1: np.ndarray, seed: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {"seed": seed, "language": "en", "id": [f"q{i}" for i in range(len(f1))], "f1": f1, "exact_match": f1}
    )


def test_bootstrap_identical_predictions_is_zero() -> None:
    f1 = np.random.default_rng(0).uniform(0, 100, size=50)
    both = pd.concat([_frame(f1, 1), _frame(f1[::-1], 2)])
    result = paired_bootstrap(pair_scores(both, both), resamples=500)
    assert result is not None
    assert (result.f1.delta, result.f1.low, result.f1.high) == (0.0, 0.0, 0.0)
    assert (result.exact_match.low, result.exact_match.high) == (0.0, 0.0)
    assert not result.f1.excludes_zero


def test_bootstrap_right_where_other_misses_excludes_zero() -> None:
    right = np.zeros(40)
    right[:10] = 100.0  # right on 10 questions the other misses, equal (wrong) on the rest
    result = paired_bootstrap(pair_scores(_frame(right), _frame(np.zeros(40))), resamples=1000)
    assert result is not None
    assert result.f1.delta == pytest.approx(25.0)
    assert result.f1.low > 0 and result.f1.excludes_zero
    worse = paired_bootstrap(pair_scores(_frame(np.zeros(40)), _frame(right)), resamples=1000)
    assert worse is not None and worse.f1.high < 0


def test_identical_models_through_the_report(tmp_path: Path) -> None:
    f1 = np.random.default_rng(1).uniform(size=(len(LANGS), QUESTIONS))
    make_study(tmp_path, {(m, s): f1 for m in ("short", "long") for s in SEEDS})
    comp = pd.read_csv(build_report(tmp_path, resamples=200).parent / "comparisons.csv")
    assert (comp[["delta_f1", "f1_low", "f1_high", "delta_em", "em_low", "em_high"]].to_numpy() == 0).all()


def test_plots_exist_and_are_embedded(study: tuple[Path, dict[str, Any], Path]) -> None:
    import matplotlib.image

    _, _, report = study
    text = report.read_text()
    embedded = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(embedded) == 3  # pretraining, F1 per language, F1 by bucket
    for rel in embedded:
        path = report.parent / rel
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20  # more than a blank canvas


def _break(root: Path, what: str) -> None:
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    if what == "no results":
        (root / "results.jsonl").unlink()
    elif what == "not json":
        (root / "results.jsonl").write_text("{broken\n")
    elif what == "missing field":
        del rows[2]["f1"]
        _jsonl(root / "results.jsonl", rows)
    elif what == "wrong type":
        rows[0]["seed"] = "one"
        _jsonl(root / "results.jsonl", rows)
    elif what == "f1 over 100":
        rows[1]["f1"] = 250.0
        _jsonl(root / "results.jsonl", rows)
    elif what == "negative question score":
        _jsonl(
            root / rows[0]["question_scores_path"],
            [{"id": "q0", "language": "en", "exact_match": 0, "f1": -1}],
        )
    elif what == "duplicate":
        _jsonl(root / "results.jsonl", [*rows, rows[0]])
    elif what == "no question scores":
        (root / rows[0]["question_scores_path"]).unlink()
    elif what == "bad question score":
        _jsonl(root / rows[0]["question_scores_path"], [{"id": "q0", "language": "en", "f1": 1.0}])
    elif what == "no results.json":
        (root / rows[0]["results_path"]).unlink()
    elif what == "bad curve":
        _jsonl(root / "pretrain_curves.jsonl", [{"model": "long", "step": "x"}])


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("no results", "results.jsonl: file not found"),
        ("not json", "results.jsonl: line 1: not JSON"),
        ("missing field", "results.jsonl: line 3: missing field 'f1'"),
        ("wrong type", "results.jsonl: line 1: field 'seed' must be an integer, got 'one'"),
        ("f1 over 100", "results.jsonl: line 2: field 'f1' must be a number from 0 to 100"),
        (
            "negative question score",
            "question_scores.jsonl: line 1: field 'f1' must be a number from 0 to 100",
        ),
        ("duplicate", "a second row for model 'short'"),
        (
            "no question scores",
            "question_scores.jsonl: file not found (question_scores_path of results.jsonl",
        ),
        ("bad question score", "question_scores.jsonl: line 1: missing field 'exact_match'"),
        ("no results.json", "results.json: file not found (results_path of results.jsonl line 1)"),
        ("bad curve", "pretrain_curves.jsonl: line 1: field 'step' must be an integer"),
    ],
)
def test_malformed_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, expected: str
) -> None:
    make_study(tmp_path)
    _break(tmp_path, what)
    assert main(["report", str(tmp_path), "--resamples", "50"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_study(tmp_path / "study")
    assert main(["report", str(tmp_path / "study"), "--out", str(tmp_path / "r"), "--resamples", "100"]) == 0
    assert (tmp_path / "r" / "report.md").is_file() and "report.md" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    first = {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.*")}
    assert main(["report", str(tmp_path / "study"), "--out", str(tmp_path / "r"), "--resamples", "100"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.*")} == first  # same inputs, same files
