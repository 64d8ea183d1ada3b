"""The embedded default: shipped data is reproducible and the demo runs end to end."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO
from longify.demo.run import DATA_FILES, run_demo, shipped_data_dir


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


def test_demo_runs_and_learns(tmp_path, capsys) -> None:
    summary = run_demo(tmp_path, steps=60, lm_steps=10, qa_epochs=2)
    printed = capsys.readouterr().out
    assert "longify demo: summary" in printed
    src = summary["source"]
    assert src["eval_loss_after"] < src["eval_loss_before"] - 1.0
    assert summary["convert"]["verification"]["passed"]
    assert json.loads((tmp_path / "summary.json").read_text())["convert"]["positions"] == 1024
    assert (tmp_path / "long" / "model.safetensors").is_file()
    lm = summary["pretrain"]
    assert lm["steps"] == 10 and lm["final"]["loss"] < lm["initial"]["loss"]
    qa = summary["qa"]
    assert qa["fine_tuned"]["f1"] > qa["untrained_head"]["f1"] + 15, qa
