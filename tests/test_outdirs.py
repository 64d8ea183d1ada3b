"""Output folders: locked against a second run, leftovers of killed runs removed, umask honoured,
exports that keep their head and their step's metrics, demo and qa evaluate that clobber nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    LongformerForTokenClassification,
)

from helpers import lock_held_elsewhere
from longify.cli import main
from longify.convert import convert
from longify.demo.corpus import wikitext
from longify.demo.files import MARKER, claim_output
from longify.errors import LongifyError
from longify.locks import output_lock
from longify.mlm.data import load_blocks
from longify.outdir import atomic_output_dir, check_output_dir, files_into
from longify.runinfo import write_json_atomic


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def survivors(pgid: int) -> list[int]:
    """Processes still alive in process group ``pgid`` (read from /proc, not from our own bookkeeping)."""
    alive = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat_file.parent.name))
    return alive


def wait_for(pattern: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not list(pattern.parent.glob(pattern.name)):
        assert time.monotonic() < deadline, f"{pattern} never appeared"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def long_model(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long") / "long"
    convert(str(tiny_sources["roberta"]), out, max_pos=128, attention_window=32, verify=False)
    return out


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("squad") / "dev-v1.1.json"
    context = "The town of Aldbury was founded in 1203 by Maria Holt. It lies on the river Colne."
    qas = [
        {
            "id": "q1",
            "question": "Who founded Aldbury?",
            "answers": [{"text": "Maria Holt", "answer_start": 43}],
        },
        {"id": "q2", "question": "On which river?", "answers": [{"text": "Colne", "answer_start": 76}]},
    ]
    assert context[43:53] == "Maria Holt" and context[76:81] == "Colne"
    data = {
        "version": "1.1",
        "data": [{"title": "Aldbury", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- locks: a second run into a folder in use is refused; a dead holder's lock is taken over ---------------


@pytest.mark.integration
def test_every_command_refuses_a_folder_in_use(
    tiny_sources, long_model, squad_file, tmp_path, capsys
) -> None:
    """Issue 8 item 7: two runs into one folder both "succeeded", the last writer's files won."""
    out = tmp_path / "shared"
    text = tmp_path / "wiki.train.raw"
    text.write_text(wikitext(2, seed=1), encoding="utf-8")
    commands = {
        "convert": ["convert", str(tiny_sources["roberta"]), str(out), "--max-pos", "128", "--no-verify"],
        "pretrain": ["pretrain", "--model_name_or_path", str(long_model), "--output_dir", str(out),
                     "--train_file_path", str(text), "--do_train", "--max_steps", "1", "--seed", "2"],
        "qa train": ["qa", "train", "--model_name_or_path", str(long_model), "--do_train",
                     "--train_file", str(squad_file), "--output_dir", str(out)],
        "qa evaluate": ["qa", "evaluate", "--model_name_or_path", str(long_model),
                        "--predict_file", str(squad_file), "--output_dir", str(out)],
        "export": ["export", str(long_model), str(out)],
        "demo": ["demo", "--out", str(out)],
    }  # fmt: skip
    with lock_held_elsewhere(out) as holder:
        for name, argv in commands.items():
            assert main(argv) == 2, name
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(out) in err[0] and f"pid {holder.pid} " in err[0], (name, err)
            assert not out.exists(), name  # refused before anything was written
    # the holder was killed (SIGKILL): its lock file is stale and is taken over
    assert (tmp_path / ".shared.lock").is_file()
    assert main(commands["convert"]) == 0
    assert (out / "model.safetensors").is_file() and not (tmp_path / ".shared.lock").exists()


@pytest.mark.integration
def test_other_ranks_of_a_launch_do_not_lock(tmp_path, monkeypatch) -> None:
    """Under torchrun only rank 0 takes the lock; ranks 1.. of the same launch are never refused."""
    out = tmp_path / "run"
    with lock_held_elsewhere(out) as holder:
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("LOCAL_RANK", "1")
        with output_lock(out):
            pass
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("LOCAL_RANK", "0")
        with pytest.raises(LongifyError, match=f"pid {holder.pid} "), output_lock(out):
            pass


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


BUILDER = """
import shutil, sys, time
from longify.locks import output_lock
with output_lock(sys.argv[2], wait=True):
    print("held", flush=True)
    time.sleep(2)
    shutil.copytree(sys.argv[1], sys.argv[2])
"""


@pytest.mark.integration
def test_a_cache_entry_being_built_is_waited_for_not_built_twice(tiny_sources, tmp_path) -> None:
    """A second process asking for a data-cache entry that another one is building waits, then loads it."""
    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    corpus = tmp_path / "wiki.train.raw"
    corpus.write_text(wikitext(8, seed=3), encoding="utf-8")
    _, first = load_blocks(str(corpus), tok, 32, cache_dir=str(tmp_path / "a"))
    entry = tmp_path / "b" / Path(first.cache_path).name
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER, first.cache_path, str(entry)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert builder.stdout.readline().strip() == "held"
        ds, stats = load_blocks(str(corpus), tok, 32, cache_dir=str(tmp_path / "b"))
    finally:
        builder.kill()
        builder.wait()
    assert stats.from_cache and len(ds) == first.n_blocks  # it waited and used the builder's entry


# --- leftovers of killed runs ------------------------------------------------------------------------------

KILLED_TOKENISATION = """
import os, sys, time
from pathlib import Path
from transformers import AutoTokenizer
from longify.mlm import data

class Stalling:  # the real tokenizer, stalled in its first batch: the moment the run is killed
    def __init__(self, backend):
        self.backend = backend
    def encode_batch_fast(self, *args, **kwargs):
        Path(sys.argv[3], f"tokenizing-{os.getpid()}").touch()
        time.sleep(300)
        return self.backend.encode_batch_fast(*args, **kwargs)

real = data.backend_copy
data.backend_copy = lambda tok: (Stalling(real(tok)[0]), real(tok)[1])
data.load_blocks(sys.argv[1], AutoTokenizer.from_pretrained(sys.argv[2]), 32, cache_dir=sys.argv[4], num_proc=3)
"""


@pytest.mark.integration
def test_killed_tokenisation_leaves_no_process_and_its_rerun_cleans_up(tiny_sources, tmp_path) -> None:
    """Issue 8 item 11: tokenizer workers outlived a killed pretrain; its `.KEY.tmp-*` stayed forever."""
    corpus = tmp_path / "wiki.train.raw"
    corpus.write_text(wikitext(8, seed=4), encoding="utf-8")
    cache, signals = tmp_path / "cache", tmp_path / "signals"
    signals.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_TOKENISATION, str(corpus), str(tiny_sources["roberta"]), str(signals),
         str(cache)],
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(signals / "tokenizing-*")
        os.kill(proc.pid, signal.SIGKILL)  # the run only, as an OOM killer or `kill -9 PID` would
        proc.wait()
        left = survivors(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert left == [], f"processes of the killed run still alive: {left}"
    assert [p.name for p in cache.iterdir() if ".tmp-" in p.name]  # what the killed run left behind

    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    ds, stats = load_blocks(str(corpus), tok, 32, cache_dir=str(cache))
    assert not stats.from_cache and len(ds) == stats.n_blocks > 0
    assert sorted(p.name for p in cache.iterdir()) == [Path(stats.cache_path).name]


KILLED_CONVERT = """
import importlib, sys, time
from pathlib import Path
conv = importlib.import_module("longify.convert.convert")

def stall(record):  # called once the weights are in the temporary folder
    Path(sys.argv[3]).touch()
    time.sleep(300)

conv._model_card = stall
conv.convert(sys.argv[1], sys.argv[2], max_pos=128, attention_window=32, verify=False)
"""


@pytest.mark.integration
def test_killed_convert_leftovers_are_removed_by_the_next_convert(tiny_sources, tmp_path) -> None:
    """Issue 8 item 11: `.OUT.tmp-*` of a killed convert (a model's size) was never removed."""
    out, signal_file = tmp_path / "long", tmp_path / "saved"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONVERT, str(tiny_sources["roberta"]), str(out), str(signal_file)],
        start_new_session=True,
    )
    try:
        wait_for(signal_file)
    finally:
        proc.kill()
        proc.wait()
    (tmp,) = tmp_path.glob(".long.tmp-*")
    assert (tmp / "model.safetensors").is_file() and not out.exists()
    assert tmp.name.startswith(f".long.tmp-{proc.pid}-")

    convert(str(tiny_sources["roberta"]), out, max_pos=128, attention_window=32, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long", "saved"]


def test_leftovers_of_dead_processes_only(tmp_path) -> None:
    """A live process's temporary folder is kept; a dead one's is removed; an old OUT parked by a swap
    that was cut short is put back."""
    out = tmp_path / "out"
    dead, live = dead_pid(), os.getppid()
    (tmp_path / f".out.tmp-{dead}-abc").mkdir()
    (tmp_path / f".out.tmp-{live}-abc").mkdir()
    parked = tmp_path / f".out.old-{dead}-xyz" / "out"
    parked.mkdir(parents=True)
    (parked / "config.json").write_text("{}")
    (tmp_path / "unrelated.tmp-1-x").mkdir()
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".out.tmp-{live}-abc", "out", "unrelated.tmp-1-x"]
    assert [p.name for p in out.iterdir()] == ["new"]  # the restored old OUT was then replaced

    (out / f".save-{dead}-q").mkdir()
    with files_into(out) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "new"]


# --- files honour the umask --------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_honour_the_umask(mask, tiny_sources, tmp_path) -> None:
    """Issue 8 item 11: output folders were 0700 and run records 0600 whatever the umask."""
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


@pytest.mark.integration
def test_export_of_a_qa_model_keeps_its_head(long_model, tmp_path, capsys) -> None:
    """Issue 8 item 8: exporting a `qa train` output wrote a masked-LM model with a random head."""
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


@pytest.mark.integration
def test_export_refuses_a_model_that_is_neither_masked_lm_nor_qa(long_model, tmp_path, capsys) -> None:
    other = tmp_path / "ner"
    LongformerForTokenClassification.from_pretrained(long_model, num_labels=3).save_pretrained(other)
    assert main(["export", str(other), str(tmp_path / "clean")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LongformerForTokenClassification" in err[0] and str(other) in err[0]
    assert not (tmp_path / "clean").exists()


@pytest.mark.integration
def test_export_of_a_checkpoint_carries_that_steps_metrics(long_model, tmp_path) -> None:
    """Issue 8 item 8: exporting checkpoint-2 copied the run's final metrics."""
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
    """Issue 8 item 9: `longify demo --out DIR` deleted files it did not write in DIR."""
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


@pytest.mark.integration
def test_qa_evaluate_never_overwrites_a_training_runs_results(
    long_model, squad_file, tmp_path, capsys
) -> None:
    """Issue 8 item 9: `qa evaluate --output_dir RUN` of a training run overwrote its results.json."""
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
