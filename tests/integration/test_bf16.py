"""``--bf16`` on a CPU trains and evaluates under CPU bf16 autocast for ``pretrain`` and ``qa train`` / ``qa
evaluate``, with the precision recorded, and a 200-step tiny pretraining follows the fp32 run's loss curve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, TrainerCallback

import longify.cpu
from helpers import AttentionCalls, tiny_qa_setup, write_wikitext
from longify.convert import convert
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.commands import qa_evaluate_main, qa_train_main
from longify.tiny import save_tiny


@pytest.fixture(autouse=True)
def native_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bf16 path itself is tested here, as on a CPU with native bf16: without it (AVX2 only) ``--bf16`` is
    refused unless forced (``test_cpu_kind.py``)."""
    monkeypatch.setattr(longify.cpu, "probe", lambda: ("AVX512", True))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a loaded machine the small bf16 ops of two
    threads waiting on each other made the 200 steps 15x slower (82 s against 5.7 s for 50 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


TRAIN_BF16 = (True, True, False, torch.bfloat16)  # training, autocast, not inference mode, bf16 output
EVAL_BF16 = (False, True, True, torch.bfloat16)  # evaluation: autocast under inference mode


class LossLog(TrainerCallback):
    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.losses[state.global_step] = logs["loss"]


def _pretrain(model: Path, data: Path, out: Path, *extra: str) -> tuple[dict[str, Any], dict[int, float]]:
    argv = [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--block_size", "64",
        "--train_file_path", str(data / "wiki.train.raw"), "--val_file_path", str(data / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--save_strategy", "no", "--logging_steps", "10", "--max_steps", "200",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3",
        "--seed", "7", "--report_to", "none", "--max_eval_blocks", "8",
        "--data_cache_dir", str(out.parent / "cache"), "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    log = LossLog()
    return pretrain(parse_pretrain_args(argv), callbacks=[log]), log.losses


def test_bf16_pretraining_follows_the_fp32_curve(
    tmp_path: Path, seen: AttentionCalls, one_thread: None
) -> None:
    """200 steps of tiny pretraining, fp32 and ``--bf16`` (same seed, data and masks), 1 thread.

    Attention dropout is 0 in this model: the fp32 CPU path draws its own keep masks while autocast takes
    another path, so with attention dropout the two runs differ by dropout noise (max 0.015 measured), not
    by precision. Hidden dropout stays (the same draws in both runs).

    Measured here (AVX-512 BF16 CPU, seeds 1, 2, 3, 7, 11): over the 20 logged losses (means of 10 steps)
    max |bf16 - fp32| <= 4.1e-4 and mean <= 1.9e-4; evaluation losses (initial, final) <= 4.0e-4 apart.
    Limits: 0.003 / 0.001 / 0.0015 (7x, 5x, 3.7x that). Faults injected into the bf16 run only, measured:
    the loss scaled by 1.01 gives 0.060 / 0.052 / 0.049-0.060 (caught by all three); the cross-entropy taken on
    bf16 logits instead of fp32 gives 0.0057 / 0.0015 / 0.0010 (caught by the max and the mean). The band
    softmax in bf16 instead of fp32 (bf16 keeps fp32's range: no overflow, only 8 bits) moves the curve by
    less than the limits (5.9e-4 / 2.1e-4): that is for the attention's own exactness tests to catch."""
    source = save_tiny("roberta", tmp_path / "source", max_len=64)
    config = AutoConfig.from_pretrained(source)
    config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(source)
    long = tmp_path / "long"
    convert(str(source), long, max_pos=128, attention_window=32)
    data = write_wikitext(tmp_path / "wiki")
    seen.calls.clear()
    fp32, fp32_losses = _pretrain(long, data, tmp_path / "fp32")
    assert not any(c["autocast"] for c in seen.calls)  # no autocast in the fp32 run
    seen.calls.clear()
    bf16, bf16_losses = _pretrain(long, data, tmp_path / "bf16", "--bf16")
    assert seen.states() == {TRAIN_BF16, EVAL_BF16}  # the initial evaluation too
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16-autocast"
    run = json.loads((tmp_path / "bf16" / "longify_run.json").read_text())
    assert run["precision"] == "bf16-autocast" and run["defining_args"]["--bf16"] is True

    assert sorted(bf16_losses) == sorted(fp32_losses) == list(range(10, 201, 10))
    gaps = [abs(bf16_losses[s] - fp32_losses[s]) for s in fp32_losses]
    assert max(gaps) <= 0.003 and sum(gaps) / len(gaps) <= 0.001, gaps
    for when in ("initial", "final"):
        assert abs(bf16[when]["loss"] - fp32[when]["loss"]) <= 0.0015, (when, bf16[when], fp32[when])
    assert bf16["final"]["loss"] < bf16["initial"]["loss"] - 0.5  # and it learned


def test_qa_train_and_evaluate_bf16_on_cpu(tmp_path: Path, seen: AttentionCalls, one_thread: None) -> None:
    s = tiny_qa_setup(tmp_path, 16, 8)
    seen.calls.clear()  # the conversion's check
    common = ["--max_seq_length", "64", "--doc_stride", "16", "--seed", "3", "--report_to", "none"]
    out = tmp_path / "trained"
    assert qa_train_main(
        ["--model_name_or_path", str(s["model"]), "--train_file", str(s["train"]), "--predict_file", str(s["dev"]),
         "--do_train", "--do_eval", "--max_steps", "3", "--per_device_train_batch_size", "4",
         "--per_device_eval_batch_size", "4", "--output_dir", str(out), "--bf16", *common]
    ) == 0  # fmt: skip
    assert seen.states() == {TRAIN_BF16, EVAL_BF16}
    results = json.loads((out / "results.json").read_text())
    assert results["precision"] == "bf16-autocast" and results["arguments"]["training"]["bf16"]
    seen.calls.clear()
    evaluated = tmp_path / "evaluated"
    assert qa_evaluate_main(
        ["--model_name_or_path", str(out), "--predict_file", str(s["dev"]), "--output_dir", str(evaluated),
         "--per_device_eval_batch_size", "3", "--bf16", *common]
    ) == 0  # fmt: skip
    assert seen.states() == {EVAL_BF16}
    assert json.loads((evaluated / "results.json").read_text())["precision"] == "bf16-autocast"
