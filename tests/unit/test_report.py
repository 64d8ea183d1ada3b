"""longify report: tables recomputed by hand, the paired bootstrap on cases with known answers, plots, and
one-line errors for missing or malformed files (a synthetic study folder written here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from helpers import LANGS, QUESTIONS, SEEDS, bucket_em, bucket_f1, make_study, write_jsonl
from longify.cli import main
from longify.report import build_report
from longify.report.bootstrap import pair_scores, paired_bootstrap


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
    comp = pd.read_csv(build_report(tmp_path, resamples=1000).parent / "comparisons.csv")
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
        write_jsonl(root / "results.jsonl", rows)
    elif what == "wrong type":
        rows[0]["seed"] = "one"
        write_jsonl(root / "results.jsonl", rows)
    elif what == "f1 over 100":
        rows[1]["f1"] = 250.0
        write_jsonl(root / "results.jsonl", rows)
    elif what == "negative question score":
        write_jsonl(
            root / rows[0]["question_scores_path"],
            [{"id": "q0", "language": "en", "exact_match": 0, "f1": -1}],
        )
    elif what == "duplicate":
        write_jsonl(root / "results.jsonl", [*rows, rows[0]])
    elif what == "no question scores":
        (root / rows[0]["question_scores_path"]).unlink()
    elif what == "bad question score":
        write_jsonl(root / rows[0]["question_scores_path"], [{"id": "q0", "language": "en", "f1": 1.0}])
    elif what == "no results.json":
        (root / rows[0]["results_path"]).unlink()
    elif what == "truncated line":
        (root / "results.jsonl").write_text('{"model": "short", "source_model": "sh')
    elif what == "truncated results.json":
        (root / rows[0]["results_path"]).write_text('{"analysis": {"answer_posi')
    elif what == "bad curve":
        write_jsonl(root / "pretrain_curves.jsonl", [{"model": "long", "step": "x"}])


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
        ("truncated line", "results.jsonl: line 1: not JSON (Unterminated string starting at: column 36)"),
        (
            "truncated results.json",
            "results.json: not JSON (Unterminated string starting at: line 1, column 15)",
        ),
    ],
)
def test_malformed_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, expected: str
) -> None:
    make_study(tmp_path)
    _break(tmp_path, what)
    assert main(["report", str(tmp_path), "--resamples", "1000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert " at at " not in err


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_study(tmp_path / "study")
    assert main(["report", str(tmp_path / "study"), "--out", str(tmp_path / "r"), "--resamples", "1000"]) == 0
    assert (tmp_path / "r" / "report.md").is_file() and "report.md" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    first = {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.*")}
    assert main(["report", str(tmp_path / "study"), "--out", str(tmp_path / "r"), "--resamples", "1000"]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").glob("*.*")} == first  # same inputs, same files


# --- figures as drawn: legend labels, tick labels and error-bar lengths, read from the Axes before saving


def _axes_facts(fig: Any) -> list[dict[str, Any]]:
    from matplotlib.collections import LineCollection

    facts = []
    for ax in fig.axes:
        legend = ax.get_legend()
        lengths = [
            float(np.hypot(*(seg[-1] - seg[0])))
            for coll in ax.collections
            if isinstance(coll, LineCollection)
            for seg in coll.get_segments()
        ]
        facts.append(
            {
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "xticks": [t.get_text() for t in ax.get_xticklabels()],
                "error_bars": lengths,
            }
        )
    return facts


def build_capturing(root: Path, **kwargs: Any) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """build_report, recording what each figure shows (by file name) as it is saved."""
    from longify.report import plots

    figures: dict[str, list[dict[str, Any]]] = {}
    original = plots._save

    def save(fig: Any, path: Path) -> Path:
        figures[path.name] = _axes_facts(fig)
        return original(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_save", save)
        report = build_report(root, **kwargs)
    return report, figures


def _rows_of(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]


def test_every_language_file_of_a_seed_is_read(tmp_path: Path) -> None:
    """A hand-merged study names one question_scores file per language: all of them count."""
    made = make_study(tmp_path)
    rows = _rows_of(tmp_path)
    for row in rows:
        scores = tmp_path / row["question_scores_path"]
        lang = row["language"] if row["language"] != "average" else "en"
        mine = scores.with_name(f"question_scores_{lang}.jsonl")
        if not mine.exists():
            write_jsonl(
                mine, [q for q in map(json.loads, scores.read_text().splitlines()) if q["language"] == lang]
            )
        row["question_scores_path"] = str(mine.relative_to(tmp_path))
    for row in rows:
        (tmp_path / row["results_path"]).parent.joinpath("question_scores.jsonl").unlink(missing_ok=True)
    write_jsonl(tmp_path / "results.jsonl", rows)
    comp = pd.read_csv(build_report(tmp_path, resamples=1000).parent / "comparisons.csv")
    assert list(comp["language"]) == ["de", "en", "all (pooled)"]
    for lang in LANGS:
        li = LANGS.index(lang)
        diffs = [made["scores"][("long", s)][li] - made["scores"][("short", s)][li] for s in SEEDS]
        assert comp[comp["language"] == lang]["delta_f1"].iloc[0] == pytest.approx(
            100 * np.mean(diffs), abs=1e-4
        )
    assert comp["pairs"].iloc[-1] == len(SEEDS) * len(LANGS) * QUESTIONS


def test_scores_file_that_disagrees_with_its_row_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another run's scores file copied over one: its means are not the row's F1/EM."""
    make_study(tmp_path)
    target = tmp_path / "jobs" / "eval-long-1" / "question_scores.jsonl"
    target.write_bytes((tmp_path / "jobs" / "eval-short-1" / "question_scores.jsonl").read_bytes())
    assert main(["report", str(tmp_path), "--resamples", "1000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    # long seed 1 is the third job written: its de row is results.jsonl line 7
    assert str(target) in err and "results.jsonl line 7" in err and "'de'" in err, err
    assert not (tmp_path / "report").exists()  # nothing half-written


def _to_percent(path: Path) -> None:
    qs = [json.loads(line) for line in path.read_text().splitlines()]
    write_jsonl(path, [{**q, "exact_match": 100 * q["exact_match"], "f1": 100 * q["f1"]} for q in qs])


def test_fraction_f1_in_a_row_of_a_percent_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_study(tmp_path)
    _to_percent(tmp_path / "jobs" / "eval-long-2" / "question_scores.jsonl")
    rows = _rows_of(tmp_path)
    rows[10]["f1"] /= 100  # long seed 2, en: f1 as a fraction
    write_jsonl(tmp_path / "results.jsonl", rows)
    assert main(["report", str(tmp_path), "--resamples", "1000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "results.jsonl line 11" in err and "eval-long-2" in err, err


def test_scale_of_a_scores_file_follows_its_row(tmp_path: Path) -> None:
    """A file in percent whose scores are only 0 and 1.0 (F1 of one point) is not multiplied by 100; a
    file in fractions next to it is."""
    rng = np.random.default_rng(3)
    scores = {
        (m, s): (rng.uniform(size=(len(LANGS), QUESTIONS)) < 0.5) * (0.01 if m == "long" else 1.0)
        for m in ("short", "long")
        for s in SEEDS
    }
    make_study(tmp_path, scores)
    for s in SEEDS:
        _to_percent(tmp_path / "jobs" / f"eval-long-{s}" / "question_scores.jsonl")  # 0 and 1.0: percent
    comp = pd.read_csv(build_report(tmp_path, resamples=1000).parent / "comparisons.csv")
    pooled = comp[comp["language"] == "all (pooled)"].iloc[0]
    diffs = np.concatenate([(scores[("long", s)] - scores[("short", s)]).ravel() for s in SEEDS])
    assert pooled["delta_f1"] == pytest.approx(100 * diffs.mean(), abs=1e-4)
    em = np.concatenate([-1.0 * (scores[("short", s)] == 1.0).ravel() for s in SEEDS])  # long's EM is 0
    assert pooled["delta_em"] == pytest.approx(100 * em.mean(), abs=1e-4)


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """long evaluated with seed 1 only, short with seeds 1 and 2."""
    root = tmp_path_factory.mktemp("one_seed")
    made = make_study(root)
    write_jsonl(root / "results.jsonl", [r for r in _rows_of(root) if (r["model"], r["seed"]) != ("long", 2)])
    report, figures = build_capturing(root, resamples=1000)
    return made, report, figures


def test_single_seed_is_drawn_without_error_bar(
    one_seed: tuple[dict[str, Any], Path, dict[str, Any]],
) -> None:
    _, _, figures = one_seed
    (lang,) = figures["f1_per_language_xquad.png"]
    assert lang["legend"] == ["short", "long (1 seed)"]
    # one error bar per language for short (2 seeds), none for long; none of zero length
    assert len(lang["error_bars"]) == len(LANGS) + 1 and min(lang["error_bars"]) > 0
    for panel in figures["f1_by_bucket_xquad.png"]:
        assert panel["legend"] == ["short", "long (1 seed)"]
        assert len(panel["error_bars"]) == 3 and min(panel["error_bars"]) > 0


def test_comparison_names_the_seeds_it_used(one_seed: tuple[dict[str, Any], Path, dict[str, Any]]) -> None:
    made, report, _ = one_seed
    comp = pd.read_csv(report.parent / "comparisons.csv", dtype={"seeds_used": str})
    row = comp[comp["language"] == "en"].iloc[0]
    li = LANGS.index("en")
    diff = made["scores"][("long", 1)][li] - made["scores"][("short", 1)][li]
    assert row["delta_f1"] == pytest.approx(100 * diff.mean(), abs=1e-4)  # seed 1 only
    assert (row["seeds"], row["seeds_used"], row["seeds_left_out"]) == (1, "1", "short: 2")
    text = report.read_text()
    note = next(line for line in text.splitlines() if "left out" in line)
    assert "long vs short on xquad" in note and "seed 1" in note and "seed 2 of short" in note, note
    assert text.index("| long model |") < text.index(note)


def test_two_seeds_leave_nothing_out(study: tuple[Path, dict[str, Any], Path]) -> None:
    _, _, report = study
    comp = pd.read_csv(report.parent / "comparisons.csv", keep_default_na=False)
    assert set(comp["seeds_left_out"]) == {""} and "left out" not in report.read_text()


def test_bucket_values_in_a_csv_and_counts_on_the_plot(study: tuple[Path, dict[str, Any], Path]) -> None:
    _, _, report = study
    table = pd.read_csv(report.parent / "buckets.csv")
    assert len(table) == 2 * 2 * 3  # models x kinds x buckets
    for r in table.itertuples(index=False):
        f1 = [bucket_f1(r.model, r.low, s) for s in SEEDS]
        em = [bucket_em(r.model, r.low, s) for s in SEEDS]
        assert (r.eval_set, r.n, r.seeds, r.bucket) == (
            "xquad",
            3 + r.low // 512,
            2,
            f"{r.low}-{r.low + 511}",
        )
        assert r.f1_mean == pytest.approx(sum(f1) / 2, abs=1e-4)
        assert r.f1_std == pytest.approx(abs(f1[0] - f1[1]) / np.sqrt(2), abs=1e-4)
        assert r.em_mean == pytest.approx(sum(em) / 2, abs=1e-4)
        assert r.em_std == pytest.approx(abs(em[0] - em[1]) / np.sqrt(2), abs=1e-4)
    assert "buckets.csv" in report.read_text()


def test_bucket_plot_labels_carry_counts(tmp_path: Path) -> None:
    make_study(tmp_path)
    for seed in SEEDS:  # another tokenizer puts 7 answers in long's first bucket
        path = tmp_path / "jobs" / f"eval-long-{seed}" / "results.json"
        data = json.loads(path.read_text())
        data["analysis"]["answer_position"]["0-511"]["count"] = 7
        path.write_text(json.dumps(data))
    _, figures = build_capturing(tmp_path, resamples=1000)
    position, length = figures["f1_by_bucket_xquad.png"]
    assert position["xticks"] == ["0-511\nn=3/7", "512-1023\nn=4", "1024-1535\nn=5"]  # short, then long
    assert length["xticks"] == ["0-511\nn=3", "512-1023\nn=4", "1024-1535\nn=5"]


def test_rerun_removes_only_its_own_stale_plots(tmp_path: Path) -> None:
    make_study(tmp_path)
    rows = _rows_of(tmp_path)
    write_jsonl(tmp_path / "results.jsonl", [*rows, *({**r, "eval_set": "other set"} for r in rows)])
    out = tmp_path / "report"
    build_report(tmp_path, resamples=1000)
    stale = {out / "plots" / "f1_per_language_other_set.png", out / "plots" / "f1_by_bucket_other_set.png"}
    assert all(p.is_file() for p in stale)
    mine = [out / "plots" / "mine.png", out / "notes.txt", out / "plots" / "f1_per_language_x.png.bak"]
    for path in mine:
        path.write_text("kept")
    write_jsonl(tmp_path / "results.jsonl", rows)
    build_report(tmp_path, resamples=1000)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "kept" for p in mine)
    assert {p.name for p in (out / "plots").glob("*.png")} == {
        "pretraining.png", "f1_per_language_xquad.png", "f1_by_bucket_xquad.png", "mine.png"
    }  # fmt: skip


@pytest.mark.parametrize("resamples", [1, 999])
def test_too_few_resamples_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], resamples: int
) -> None:
    make_study(tmp_path)
    assert main(["report", str(tmp_path), "--resamples", str(resamples)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--resamples {resamples}" in err and "1000" in err, err
    assert not (tmp_path / "report").exists()
