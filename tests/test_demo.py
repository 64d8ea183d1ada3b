"""The embedded default: shipped data is reproducible and the demo runs end to end."""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import REPO
from longify.demo.run import DATA_FILES, run_demo, shipped_data_dir

pytestmark = pytest.mark.integration  # Trainer runs, subprocesses, torchrun


def test_shipped_corpus_is_regenerated_exactly() -> None:
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert set(rendered) == set(DATA_FILES)
    for name, text in rendered.items():
        assert (shipped_data_dir() / name).read_text(encoding="utf-8") == text
    train = rendered["wiki.train.raw"]
    assert train.startswith(" \n = ") and "\n = = History = = \n" in train


def test_demo_runs_every_stage(tmp_path, capsys) -> None:
    """The pipeline's plumbing at a tiny scale (the learning claims are checked in the slow test below)."""
    summary = run_demo(tmp_path, steps=20, lm_steps=2, qa_epochs=1, qa_examples=(8, 8))
    printed = capsys.readouterr().out
    assert "longify demo: summary" in printed and "qa       long-document QA" in printed
    assert summary["convert"]["verification"]["passed"]
    assert summary["pretrain"]["steps"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["convert"]["positions"] == 1024
    for path in (
        "long/model.safetensors",
        "long-lm/model.safetensors",
        "qa/predictions.json",
        "qa/results.json",
    ):
        assert (tmp_path / path).is_file(), path


@pytest.mark.slow
def test_demo_learns_at_every_stage(tmp_path) -> None:
    summary = run_demo(tmp_path)
    src = summary["source"]
    assert src["eval_loss_after"] < src["eval_loss_before"] - 1.0
    lm = summary["pretrain"]
    assert lm["final"]["loss"] < lm["initial"]["loss"]
    qa = summary["qa"]
    assert qa["fine_tuned"]["f1"] > qa["untrained_head"]["f1"] + 15, qa
