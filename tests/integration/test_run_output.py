"""What runs print: a pretrain resume reports only keys that are really missing; ``-q`` keeps ``pretrain``'s
and ``qa train``'s console to warnings and the closing summary; without it the Trainer's log lines, progress
bars and INFO lines are all there."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
from transformers import TrainerCallback

from helpers import REPO, tiny_qa_setup, write_wikitext


class _CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("crash")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny converted Longformer (256 positions, window 32), WikiText-format text and EASY SQuAD files."""
    setup = tiny_qa_setup(tmp_path_factory.mktemp("small"), 16, 6)
    return {**setup, "wiki": write_wikitext(setup["root"] / "wiki")}


def pretrain_argv(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(s["model"]), "--output_dir", str(out), "--block_size", "128",
        "--train_file_path", str(s["wiki"] / "wiki.train.raw"), "--val_file_path", str(s["wiki"] / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--eval_strategy", "steps", "--eval_steps", "4", "--save_steps", "4",
        "--logging_steps", "2", "--max_steps", "8", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3", "--seed", "7", "--report_to", "none",
        "--max_eval_blocks", "8", "--data_cache_dir", str(out.parent / "cache"), *extra,
    ]  # fmt: skip


def test_resume_reports_only_really_missing_keys(small, tmp_path, monkeypatch) -> None:
    from longify.mlm.args import parse_pretrain_args
    from longify.mlm.train import pretrain

    argv = pretrain_argv(small, tmp_path / "run", "--disable_tqdm", "true")
    with pytest.raises(RuntimeError, match="crash"):
        pretrain(parse_pretrain_args(argv), callbacks=[_CrashAt(6)])
    assert (tmp_path / "run" / "checkpoint-4").is_dir()
    warnings = _Lines()
    logging.getLogger("transformers").addHandler(warnings)
    try:
        with pytest.raises(RuntimeError, match="crash"):  # resumes from checkpoint-4: the decoder is tied
            pretrain(parse_pretrain_args(argv), callbacks=[_CrashAt(6)])
        assert not [line for line in warnings.lines if "missing keys" in line], warnings.lines
        load = safetensors.torch.load_file

        def lose_a_key(path, *args, **kwargs):  # a checkpoint that really lacks a weight
            tensors = load(path, *args, **kwargs)
            tensors.pop("lm_head.dense.weight", None)
            return tensors

        monkeypatch.setattr(safetensors.torch, "load_file", lose_a_key)
        pretrain(parse_pretrain_args(argv))
    finally:
        logging.getLogger("transformers").removeHandler(warnings)
    missing = [line for line in warnings.lines if "missing keys" in line]
    assert len(missing) == 1 and "lm_head.dense.weight" in missing[0], warnings.lines
    assert "decoder" not in missing[0]


# --- -q is quiet ---------------------------------------------------------------------------------------

BAR_SIGNS = ("%|", "it/s", "examples/s", "\r")


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO / "src"))}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "longify.cli", *argv], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip


def assert_quiet(run: subprocess.CompletedProcess[str], summary: str) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == [run.stdout.splitlines()[-1]] and summary in run.stdout, run.stdout
    for sign in BAR_SIGNS:
        assert sign not in run.stderr, run.stderr[-3000:]
    assert "{'" not in run.stdout + run.stderr  # no metric dicts printed by the Trainer
    assert " INFO " not in run.stderr


def test_quiet_pretrain_prints_its_summary_only(small, tmp_path) -> None:
    run = cli("-q", "pretrain", *pretrain_argv(small, tmp_path / "run"))  # the Trainer's tqdm bar is on
    assert_quiet(run, "eval loss")


def test_quiet_qa_train_prints_its_summary_only(small, tmp_path) -> None:
    run = cli(
        "qa", "train", "-q", "--model_name_or_path", str(small["model"]), "--do_train", "--do_eval",
        "--train_file", str(small["train"]), "--predict_file", str(small["dev"]), "--max_seq_length", "64",
        "--doc_stride", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
        "--eval_strategy", "steps", "--eval_steps", "1", "--logging_steps", "1", "--report_to", "none",
        "--output_dir", str(tmp_path / "qa"),
    )  # fmt: skip
    assert_quiet(run, "longify qa train:")


def test_without_quiet_the_trainer_logs_progress_bars_and_info_show(small, tmp_path) -> None:
    run = cli("pretrain", *pretrain_argv(small, tmp_path / "run"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "{'loss'" in run.stdout and "{'eval_loss'" in run.stdout  # the Trainer's log lines
    assert "%|" in run.stderr and "Masking (eval)" in run.stderr and " INFO longify" in run.stderr
