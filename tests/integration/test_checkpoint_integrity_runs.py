"""Checkpoint integrity in real runs: a checkpoint with changed bytes in any file, or an edited step in its
trainer state, is skipped on resume with a line naming the file, and the rerun ends as the uninterrupted run;
the NaN guard names the newest checkpoint that verifies; a full disk during a save is one line and resume
skips the half-written checkpoint; a QA run finished from its last checkpoint reports the training time of
the run, not of the reload."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from helpers import (
    one_line,
    qa_train_argv,
    read_json,
    same_weights,
    trainer_step,
    write_wikitext,
)
from longify.checkpoint_files import MARK
from longify.cli import main
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain

# --------------------------------------------------------------------------------------------- helpers


def _flip_low_bits(path: Path, n: int = 200) -> None:
    """Flip the lowest bit of ``n`` bytes of ``path`` past its first quarter (for safetensors: past the
    header, the low mantissa bits of float32 values); the size stays the same."""
    data = bytearray(path.read_bytes())
    start = len(data) // 4
    if path.name.endswith(".safetensors"):
        start = 8 + struct.unpack("<Q", data[:8])[0]
    step = max(1, (len(data) - start) // n)
    for i in range(start, len(data), step):
        data[i] ^= 0x01
    assert len(data) == path.stat().st_size
    path.write_bytes(bytes(data))


def _edit_json_digit(path: Path, key: str, new: str) -> None:
    """Replace the first digit of ``key``'s number in the JSON file ``path`` by ``new`` (size unchanged)."""
    text = path.read_text(encoding="utf-8")
    at = text.index(f'"{key}": ') + len(key) + 4
    assert text[at].isdigit(), text[at : at + 10]
    path.write_text(text[:at] + new + text[at + 1 :], encoding="utf-8")


# ------------------------------------------------------------------------------------- pretrain, real runs


@pytest.fixture(scope="module")
def wiki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wikitext(tmp_path_factory.mktemp("wiki"))


def _cmd(model: Path, out: Path, data: Path, *extra: str) -> list[str]:
    """6 steps, a checkpoint after every one, no evaluation (the weights and training loss are compared)."""
    return [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128", "--attention_window", "32",
        "--train_file_path", str(data / "wiki.train.raw"), "--do_train", "--save_steps", "1",
        "--logging_steps", "4", "--max_steps", "6", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
        "--seed", "7", "--report_to", "none", "--data_cache_dir", str(out.parent / "cache"), "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_sources, wiki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run with checkpoints 1..6 (never modified: tests work on copies)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    assert main(["pretrain", *_cmd(tiny_sources["roberta"], out, wiki)]) == 0
    return out


def _same_as_reference(ref: Path, run: Path) -> None:
    same_weights(ref, run)
    a, b = read_json(ref / "pretrain_metrics.json"), read_json(run / "pretrain_metrics.json")
    assert (a["steps"], a["train_loss"]) == (b["steps"], b["train_loss"]) == (6, a["train_loss"])
    assert "\n- steps: 6\n" in (run / "README.md").read_text()
    assert (run / "README.md").read_bytes() == (ref / "README.md").read_bytes()


# the file damaged in each checkpoint (6 = newest): every one is skipped, the run resumes from checkpoint-1
DAMAGED = {
    6: "model.safetensors",
    5: "optimizer.pt",
    4: "scheduler.pt",
    3: "rng_state.pth",
    2: "trainer_state.json",
}


def test_changed_bytes_in_any_checkpoint_file_are_skipped_naming_the_file(
    tiny_sources, wiki, reference, tmp_path, caplog, capsys
) -> None:
    run = shutil.copytree(reference, tmp_path / "run")
    for step, name in DAMAGED.items():
        path = run / f"checkpoint-{step}" / name
        if name == "trainer_state.json":
            _edit_json_digit(path, "total_flos", "9")
        else:
            _flip_low_bits(path)
    cmd = _cmd(tiny_sources["roberta"], run, wiki)
    six = run / "checkpoint-6"
    assert main(["pretrain", *cmd, "--resume_from_checkpoint", str(six)]) == 2
    assert f"{six}: damaged checkpoint, model.safetensors differs from its save (sha256)" in one_line(capsys)
    with caplog.at_level(logging.INFO, logger="longify"):
        assert main(["pretrain", *cmd]) == 0
    for step, name in DAMAGED.items():
        assert f"skipping {run / f'checkpoint-{step}'}: {name} differs from its save (sha256)" in caplog.text
    assert f"resuming from {run / 'checkpoint-1'}" in caplog.text
    _same_as_reference(reference, run)


def test_an_edited_step_in_trainer_state_is_skipped(tiny_sources, wiki, reference, tmp_path, caplog) -> None:
    """``global_step`` 6 -> 9 (same size): the run neither "finishes" at step 9 nor writes a card saying so."""
    run = shutil.copytree(reference, tmp_path / "run")
    _edit_json_digit(run / "checkpoint-6" / "trainer_state.json", "global_step", "9")
    with caplog.at_level(logging.INFO, logger="longify"):
        assert main(["pretrain", *_cmd(tiny_sources["roberta"], run, wiki)]) == 0
    assert (
        f"skipping {run / 'checkpoint-6'}: trainer_state.json says global_step 9, but it was saved at step 6"
        in caplog.text
    )
    assert trainer_step(run / "checkpoint-6") == 6
    _same_as_reference(reference, run)


class _PoisonBefore(TrainerCallback):
    """Makes every weight NaN before optimizer step ``step`` (a diverged run, without changing its flags)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))


def test_nan_guard_names_the_newest_checkpoint_that_verifies(tiny_sources, wiki, reference, tmp_path) -> None:
    run = shutil.copytree(reference, tmp_path / "run")
    _flip_low_bits(run / "checkpoint-6" / "model.safetensors")
    args = parse_pretrain_args(_cmd(tiny_sources["roberta"], run, wiki))
    with pytest.raises(LongifyError) as err:
        pretrain(args, callbacks=[_PoisonBefore(6)])  # resumes from checkpoint-5, step 6 diverges
    assert str(err.value).startswith("training loss is nan at step 6; stopped.")
    assert f"Last good checkpoint: {run / 'checkpoint-5'} " in str(err.value)


@pytest.mark.parametrize("failing", ["model.safetensors", "optimizer.pt"])
def test_full_disk_during_a_checkpoint_save_is_one_line_and_resume_skips_it(
    failing, wiki, reference, tmp_path, tmpfs, caplog, capsys
) -> None:
    """Room for one checkpoint, not two: the second save fails in its weights (safetensors removes its
    file) or its optimizer state (torch leaves it half-written): exit 2, one line naming that file; the
    half-written checkpoint has no completion mark, and the rerun on a larger disk resumes from the first."""
    ckpt = sum(p.stat().st_size for p in (reference / "checkpoint-1").iterdir())
    model = reference / "converted"  # a Longformer already: nothing converted into the tmpfs
    weights = (model / "model.safetensors").stat().st_size
    room = weights // 2 if failing == "model.safetensors" else weights + weights // 2
    full = tmpfs(tmp_path / "full", f"size={ckpt + room}")
    run = full / "run"
    cmd = ["pretrain", "--model_name_or_path", str(model), "--output_dir", str(run),
           "--train_file_path", str(wiki / "wiki.train.raw"), "--do_train", "--save_steps", "1",
           "--max_steps", "2", "--per_device_train_batch_size", "2", "--seed", "7", "--report_to", "none",
           "--data_cache_dir", str(tmp_path / "cache"), "--disable_tqdm", "true"]  # fmt: skip
    assert main(cmd) == 2
    half = run / "checkpoint-2"
    assert one_line(capsys) == (
        f"longify: error: {half / failing}: no space left on the disk while writing it; free some space or "
        "choose another folder"
    )
    assert (run / "checkpoint-1" / MARK).is_file() and not (half / MARK).exists()
    subprocess.run(["mount", "-o", f"remount,size={ckpt * 4 + weights * 2}", str(full)], check=True)
    with caplog.at_level(logging.INFO, logger="longify"):
        assert main(cmd) == 0
    assert f"skipping {half}: " in caplog.text
    assert f"resuming from {run / 'checkpoint-1'}" in caplog.text
    assert (half / MARK).is_file() and read_json(run / "pretrain_metrics.json")["steps"] == 2


# ----------------------------------------------------------------------------------------- qa train


class _Stopped(Exception):
    """Raised right after the save of the last checkpoint: the run ends before its export."""


class _StopAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise _Stopped


def test_qa_finished_from_its_last_checkpoint_reports_the_runs_training_time(
    qa_setup, tmp_path, monkeypatch
) -> None:
    """Stopped right after its last checkpoint (in-process; the SIGKILL version: test_crash_safe_runs.py):
    the rerun loads it, and results.json's train block carries the training time and throughput of the run
    (recorded at the save), not those of the reload, and says it was finished from that checkpoint."""
    import transformers.trainer as hf_trainer

    run = tmp_path / "run"
    cmd = [a for a in qa_train_argv(qa_setup, run) if a != "--do_eval"]  # the train block is what is checked
    with monkeypatch.context() as patch:  # train_qa takes no callbacks: one for every Trainer
        patch.setattr(hf_trainer, "DEFAULT_CALLBACKS", [*hf_trainer.DEFAULT_CALLBACKS, _StopAfterSave(8)])
        started = time.time()
        with pytest.raises(_Stopped):  # 12 questions -> 13 windows, 4 a batch, 2 epochs: 8 steps
            main(["qa", "train", *cmd])
        wall = time.time() - started
    assert not (run / "results.json").exists()
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    assert trainer_step(states[-1].parent) == 8, states
    lower = states[-1].stat().st_mtime - states[0].stat().st_mtime  # steps 4..8 at least were trained
    assert main(["qa", "train", *cmd]) == 0
    train = read_json(run / "results.json")["train"]
    assert train["global_step"] == 8 and train["finished_from_checkpoint"] == str(run / "checkpoint-8")
    assert lower <= train["train_runtime"] <= wall, (lower, train, wall)
    assert train["train_steps_per_second"] == pytest.approx(8 / train["train_runtime"], rel=1e-2)
    samples = train["train_samples_per_second"] * train["train_runtime"]
    assert 4 * 8 - 6 - 0.1 <= samples <= 4 * 8 + 0.1, train  # 2 epochs of 4-window batches, the last short
