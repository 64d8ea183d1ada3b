"""Output folders in one process: the lock is reentrant and leaves no file, and goes inside a folder whose
parent is read-only; outputs honour the umask; ``export`` keeps a QA model's head and a checkpoint's own
metrics; ``demo`` and ``qa evaluate`` clobber nothing. Against other processes:
tests/integration/test_outdir_processes.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    LongformerForTokenClassification,
)

from helpers import two_question_squad
from longify.cli import main
from longify.convert import convert
from longify.demo.corpus import wikitext
from longify.demo.files import MARKER, claim_output
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import output_lock
from longify.mlm.data import load_blocks
from longify.outdir import atomic_output_dir, check_output_dir, files_into


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_question_squad(tmp_path_factory.mktemp("squad") / "dev-v1.1.json")


@pytest.fixture(scope="module")
def long_model(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long") / "long"
    convert(str(tiny_sources["roberta"]), out, max_pos=128, attention_window=32, verify=False)
    return out


def test_lock_is_reentrant_and_leaves_no_file(tmp_path) -> None:
    out = tmp_path / "run"
    with output_lock(out), output_lock(out):
        assert (tmp_path / ".run.lock").is_file()
        holder = json.loads((tmp_path / ".run.lock").read_text())
        assert holder["pid"] == os.getpid()
    assert not (tmp_path / ".run.lock").exists()


def test_lock_inside_a_folder_whose_parent_is_read_only(tmp_path, monkeypatch) -> None:
    """``--output_dir .`` in a home folder: the parent (/home) is not writable, the lock goes inside."""
    parent = tmp_path / "ro"
    (parent / "run").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != parent and real_access(p, mode))
    with output_lock(parent / "run"):
        assert (parent / "run" / ".longify.lock").is_file() and not list(parent.glob(".*"))
        check_output_dir(parent / "run", overwrite=False)  # the lock file alone is not content
        with atomic_output_dir(parent / "run" / "sub") as tmp:  # its lock is beside it, inside run/
            (tmp / "f").write_text("x")
    assert (parent / "run" / "sub" / "f").is_file() and not (parent / "run" / ".longify.lock").exists()


# --- files honour the umask --------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_honour_the_umask(mask, tiny_sources, tmp_path) -> None:
    """Output folders, run records, staged files and cache entries get the modes the umask gives (never a
    fixed 0700 or 0600)."""
    old = os.umask(mask)
    try:
        convert(
            str(tiny_sources["roberta"]), tmp_path / "long", max_pos=128, attention_window=32, verify=False
        )
        write_json_atomic(tmp_path / "run" / "record.json", {"a": 1})
        with files_into(tmp_path / "run") as tmp:
            (tmp / "config.json").write_text("{}")
        corpus = tmp_path / "wiki.train.raw"
        corpus.write_text(wikitext(4, seed=5), encoding="utf-8")
        tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
        load_blocks(str(corpus), tok, 32, cache_dir=str(tmp_path / "cache"))
    finally:
        os.umask(old)
    checked = 0
    for path in [tmp_path / "long", *tmp_path.rglob("*")]:
        if path == corpus:
            continue
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))
        checked += 1
    assert checked > 12


# --- export keeps the head and its step's metrics ----------------------------------------------------------


def test_export_of_a_qa_model_keeps_its_head(long_model, tmp_path, capsys) -> None:
    """``export`` of a ``qa train`` output is a QA model with its own trained head and weights, and its results."""
    run = tmp_path / "qa-run"
    model = AutoModelForQuestionAnswering.from_pretrained(long_model)
    with torch.no_grad():
        model.qa_outputs.weight.normal_()
        model.longformer.encoder.layer[0].attention.self.query_global.weight.add_(1.0)  # trained: not local
    model.save_pretrained(run)
    AutoTokenizer.from_pretrained(long_model).save_pretrained(run)
    (run / "results.json").write_text(json.dumps({"average": {"f1": 50.0}, "train": {}}))
    assert main(["export", str(run), str(tmp_path / "clean")]) == 0
    clean = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "clean")
    for name, value in model.state_dict().items():
        assert torch.equal(clean.state_dict()[name], value), name
    assert json.loads((tmp_path / "clean" / "results.json").read_text())["average"]["f1"] == 50.0
    assert "question-answering" in (tmp_path / "clean" / "README.md").read_text()


def test_export_refuses_a_model_that_is_neither_masked_lm_nor_qa(long_model, tmp_path, capsys) -> None:
    other = tmp_path / "ner"
    LongformerForTokenClassification.from_pretrained(long_model, num_labels=3).save_pretrained(other)
    assert main(["export", str(other), str(tmp_path / "clean")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LongformerForTokenClassification" in err[0] and str(other) in err[0]
    assert not (tmp_path / "clean").exists()


def test_export_of_a_checkpoint_carries_that_steps_metrics(long_model, tmp_path) -> None:
    """``export`` of checkpoint-2 carries the metrics up to step 2, never the run's final ones."""
    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint-2"
    AutoModelForMaskedLM.from_pretrained(long_model).save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(long_model).save_pretrained(run)
    initial, at2, at4 = {"step": 0, "loss": 9.0}, {"step": 2, "loss": 7.0}, {"step": 4, "loss": 5.0}
    metrics = {"initial": initial, "evals": [at2, at4], "final": {"loss": 5.0}, "steps": 4, "seed": 7}
    (run / "pretrain_metrics.json").write_text(json.dumps(metrics))
    log = [{"eval_loss": 9.0, "step": 0}, {"loss": 8.0, "step": 1}, {"eval_loss": 7.0, "step": 2}]
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": log}))
    assert main(["export", str(ckpt), str(tmp_path / "clean")]) == 0
    exported = json.loads((tmp_path / "clean" / "pretrain_metrics.json").read_text())
    assert exported["initial"] == initial and exported["evals"] == [at2] and exported.get("final") is None
    assert exported["seed"] == 7 and exported["checkpoint_step"] == 2 and "steps" not in exported
    steps = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert steps == {"step": 2, "evals": [log[0], log[2]]}
    AutoModelForMaskedLM.from_pretrained(tmp_path / "clean")


# --- demo and qa evaluate never clobber another's files ----------------------------------------------------


def test_demo_refuses_a_folder_it_did_not_create(tmp_path, capsys) -> None:
    """`longify demo --out DIR` refuses a DIR it did not create (one line naming --overwrite) and deletes
    nothing in it; a folder the demo made is taken again."""
    out = tmp_path / "mine"
    (out / "source").mkdir(parents=True)
    (out / "source" / "thesis.tex").write_text("keep me")
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    assert sorted(p.name for p in out.rglob("*")) == ["source", "thesis.tex"]

    claim_output(out, overwrite=True)  # --overwrite takes it
    assert (out / MARKER).is_file()
    claim_output(out, overwrite=False)  # a folder the demo made: reruns (`make demo`) go on
    fresh = tmp_path / "new"
    claim_output(fresh, overwrite=False)
    (fresh / "summary.json").write_text("{}")
    claim_output(fresh, overwrite=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output(empty, overwrite=False)
    assert (fresh / MARKER).is_file() and (empty / MARKER).is_file()
    with pytest.raises(LongifyError, match="not a directory"):
        (tmp_path / "file").write_text("x")
        claim_output(tmp_path / "file", overwrite=True)


def test_qa_evaluate_never_overwrites_a_training_runs_results(
    long_model, squad_file, tmp_path, capsys
) -> None:
    """`qa evaluate --output_dir RUN` into a ``qa train`` run is refused in one line: its results.json stays."""
    run = tmp_path / "qa-run"
    run.mkdir()
    trained = {
        "average": {"exact_match": 80.0, "f1": 90.0},
        "train": {"global_step": 10},
        "model_dir": str(run),
    }
    (run / "results.json").write_text(json.dumps(trained))
    argv = ["qa", "evaluate", "--model_name_or_path", str(long_model), "--predict_file", str(squad_file),
            "--max_seq_length", "64", "--doc_stride", "16", "--output_dir"]  # fmt: skip
    assert main([*argv, str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run) in err[0] and "qa train" in err[0]
    assert json.loads((run / "results.json").read_text()) == trained and sorted(os.listdir(run)) == [
        "results.json"
    ]

    other = tmp_path / "eval"
    assert main([*argv, str(other)]) == 0
    (other / "results.json").write_text(
        json.dumps({**json.loads((other / "results.json").read_text()), "x": 1})
    )
    assert main([*argv, str(other)]) == 0  # its own results: a rerun replaces them
    assert "x" not in json.loads((other / "results.json").read_text())
    assert main([*argv, str(run), "--overwrite_output_dir"]) == 0  # asked for explicitly
    assert "train" not in json.loads((run / "results.json").read_text())
