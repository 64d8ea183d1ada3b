"""Output folders against other processes: every command refuses a folder in use (ranks 1.. of a launch never
lock), a data-cache entry being built is waited for, not built twice, and what killed runs leave behind
(tokenizer workers, temporary folders, an OUT parked by a swap) is removed, while a live process's is kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import (
    AutoTokenizer,
)

from helpers import lock_held_elsewhere, two_question_squad
from longify.cli import main
from longify.convert import convert
from longify.demo.corpus import wikitext
from longify.errors import LongifyError
from longify.locks import output_lock
from longify.mlm.data import load_blocks
from longify.outdir import atomic_output_dir, files_into


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_question_squad(tmp_path_factory.mktemp("squad") / "dev-v1.1.json")


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


# --- locks: a second run into a folder in use is refused; a dead holder's lock is taken over ---------------


def test_every_command_refuses_a_folder_in_use(
    tiny_sources, long_model, squad_file, tmp_path, capsys
) -> None:
    """Every command refuses, in one line naming the holder's PID, a folder that another process is writing,
    before writing anything; a dead holder's lock is taken over."""
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


BUILDER = """
import shutil, sys, time
from longify.locks import output_lock
with output_lock(sys.argv[2], wait=True):
    print("held", flush=True)
    time.sleep(2)
    shutil.copytree(sys.argv[1], sys.argv[2])
"""


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


def test_killed_tokenisation_leaves_no_process_and_its_rerun_cleans_up(tiny_sources, tmp_path) -> None:
    """A pretrain killed while tokenizing leaves no worker process alive, and its rerun removes the
    `.KEY.tmp-*` it left."""
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


def test_killed_convert_leftovers_are_removed_by_the_next_convert(tiny_sources, tmp_path) -> None:
    """The `.OUT.tmp-*` of a killed convert (a model's size) is removed by the next convert."""
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
