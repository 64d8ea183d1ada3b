"""``--bf16 --bf16_on_emulated_cpu`` on a CPU without native bf16 (faked through ``longify.cpu.probe``):
``pretrain`` and ``qa train`` run under bf16 autocast, and their run records name the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import fake_cpu, tiny_qa_setup, write_wikitext
from longify.cli import main
from longify.cpu import FORCE_FLAG

TRAIN_BF16 = (True, True, False, torch.bfloat16)  # training, autocast, not inference mode, bf16 output
EVAL_BF16 = (False, True, True, torch.bfloat16)  # evaluation: autocast under inference mode
AVX2 = ("AVX2", False)


FORCED_CPU = {"capability": "AVX2", "native_bf16": False, "threads": 1}


def _runs_forced_bf16(argv: list[str], seen, out: Path, records: tuple[str, ...]) -> None:
    """The command runs, trains and evaluates under bf16 autocast, and each record names the faked CPU."""
    seen.calls.clear()
    assert main(argv) == 0
    assert {TRAIN_BF16, EVAL_BF16} <= seen.states()
    for name in records:
        record = json.loads((out / name).read_text())
        assert record["precision"] == "bf16-autocast" and record["cpu"] == FORCED_CPU, name


def test_forced_bf16_pretraining_runs_and_records_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_sources: dict[str, Path], one_thread, seen
) -> None:
    """``--bf16 --bf16_on_emulated_cpu`` on an AVX2 CPU trains under bf16 autocast; both run records name it."""
    fake_cpu(monkeypatch, AVX2)
    data = write_wikitext(tmp_path / "wiki")
    out = tmp_path / "run"
    argv = [
        "pretrain", "--model_name_or_path", str(tiny_sources["roberta"]), "--max_pos", "128",
        "--attention_window", "32", "--output_dir", str(out), "--block_size", "64",
        "--train_file_path", str(data / "wiki.train.raw"), "--val_file_path", str(data / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--max_eval_blocks", "2", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true", "--data_cache_dir", str(tmp_path / "cache"),
        "--bf16", FORCE_FLAG,
    ]  # fmt: skip
    _runs_forced_bf16(argv, seen, out, ("pretrain_metrics.json", "longify_run.json"))


def test_forced_bf16_qa_train_runs_and_records_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread, seen
) -> None:
    fake_cpu(monkeypatch, AVX2)
    s = tiny_qa_setup(tmp_path, 8, 4)
    out = tmp_path / "trained"
    argv = [
        "qa", "train", "--model_name_or_path", str(s["model"]), "--train_file", str(s["train"]),
        "--predict_file", str(s["dev"]), "--do_train", "--do_eval", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_seq_length", "64",
        "--doc_stride", "16", "--output_dir", str(out), "--report_to", "none", "--bf16", FORCE_FLAG,
    ]  # fmt: skip
    _runs_forced_bf16(argv, seen, out, ("results.json", "longify_run.json"))
    assert json.loads((s["model"] / "conversion.json").read_text())["cpu"] == FORCED_CPU
