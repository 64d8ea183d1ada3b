"""Data parallelism under torchrun: real DDP on CPU (gloo), the same loss, gradient, parameters and
evaluation as one process with the same global batch; conversion once, by rank 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from helpers import REPO, ddp_files

SCRIPT = REPO / "tests" / "scripts" / "ddp_run.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
needs_torchrun = pytest.mark.skipif(
    not TORCHRUN.exists() and not shutil.which("torchrun"), reason="no torchrun"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ddp_files(tmp_path_factory.mktemp("ddp"))


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO / "src"),
    }


def launch(record: Path, args: list[str], processes: int) -> list[dict[str, Any]]:
    """Run ddp_run.py in ``processes`` processes (torchrun on a free port when more than one)."""
    head = (
        [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes)]
        if processes > 1
        else [sys.executable]
    )
    res = subprocess.run(
        [*head, str(SCRIPT), str(record), *args], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-4000:]
    # longify's models have no unused parameters: DDP is told so, and does not warn on every rank
    assert "find_unused_parameters=True" not in res.stderr, res.stderr[-4000:]
    return [json.loads((record / f"rank{r}.json").read_text()) for r in range(processes)]


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        diff = float((wa[key] - wb[key]).abs().max())
        assert diff <= atol, f"{key}: max |diff| {diff}"


def train_logs(record: dict[str, Any]) -> list[tuple[int, float, float]]:
    return [(e["step"], e["loss"], e["grad_norm"]) for e in record["logs"] if "grad_norm" in e]


def assert_same_training(one: dict[str, Any], ranks: list[dict[str, Any]]) -> None:
    """Every rank holds the same parameters after every step (real DDP), and they are those of one
    process; the logged loss and gradient norm are one process's, not multiplied by the world size."""
    for other in ranks[1:]:
        assert other["checksums"] == ranks[0]["checksums"]  # all-reduced gradients: bitwise equal
    assert [c[0] for c in ranks[0]["checksums"]] == [c[0] for c in one["checksums"]]
    for (_, total, absolute), (_, ref_total, ref_absolute) in zip(
        ranks[0]["checksums"], one["checksums"], strict=True
    ):
        assert total == pytest.approx(ref_total, rel=1e-6, abs=1e-4)
        assert absolute == pytest.approx(ref_absolute, rel=1e-6)
    ddp_logs, ref_logs = train_logs(ranks[0]), train_logs(one)
    assert len(ref_logs) >= 3 and [s for s, *_ in ddp_logs] == [s for s, *_ in ref_logs]
    for (_, loss, norm), (_, ref_loss, ref_norm) in zip(ddp_logs, ref_logs, strict=True):
        assert loss == pytest.approx(ref_loss, rel=1e-4) and norm == pytest.approx(ref_norm, rel=1e-4)


SGD = ["--optim", "sgd", "--max_grad_norm", "0", "--report_to", "none", "--disable_tqdm", "true"]


@needs_torchrun
def test_pretrain_two_processes_equal_one(files: dict[str, Path], tmp_path: Path) -> None:
    """Two CPU processes (1 block x 2 accumulation each) against one process (4 blocks): same global batch,
    so the same weights, train loss, gradient norm and evaluation. SGD without clipping, so that a gradient
    scaled by the world size shows in the weights. The short source is converted under torchrun (rank 0)."""

    def command(out: Path, per_device: int, accumulation: int) -> list[str]:
        return [
            "pretrain", "--model_name_or_path", str(files["source"]), "--output_dir", str(out),
            "--max_pos", "128", "--attention_window", "32",
            "--train_file_path", str(files["root"] / "wiki.train.raw"),
            "--val_file_path", str(files["root"] / "wiki.valid.raw"), "--max_eval_blocks", "4",
            "--do_train", "--do_eval", "--max_steps", "3", "--logging_steps", "1", "--learning_rate", "0.5",
            "--per_device_train_batch_size", str(per_device), "--gradient_accumulation_steps", str(accumulation),
            "--per_device_eval_batch_size", "2", "--seed", "7", "--data_cache_dir", str(tmp_path / "cache"), *SGD,
        ]  # fmt: skip

    one_out, ddp_out = tmp_path / "one", tmp_path / "ddp"
    (one,) = launch(tmp_path / "rec-one", command(one_out, 4, 1), 1)
    ranks = launch(tmp_path / "rec-ddp", command(ddp_out, 1, 2), 2)
    assert_same_training(one, ranks)
    assert_same_weights(one_out, ddp_out)
    ref = json.loads((one_out / "pretrain_metrics.json").read_text())
    got = json.loads((ddp_out / "pretrain_metrics.json").read_text())
    assert ref["world_size"] == 1 and got["world_size"] == 2
    assert json.loads((ddp_out / "longify_run.json").read_text())["world_size"] == 2
    for when in ("initial", "final"):
        assert got[when]["masked_tokens"] == ref[when]["masked_tokens"]
        assert got[when]["loss"] == pytest.approx(ref[when]["loss"], rel=1e-5)
    assert ref["final"]["loss"] != pytest.approx(ref["initial"]["loss"], rel=1e-3)  # it did train


@needs_torchrun
def test_qa_two_processes_equal_one(files: dict[str, Path], tmp_path: Path) -> None:
    """``qa train`` with 2 x 2 windows against one process with 4, then ``qa evaluate`` of the result:
    same weights and losses; evaluation sharded (each window run once, on one rank), scored by rank 0 with
    one process's numbers and predictions."""

    def command(out: Path, per_device: int) -> list[str]:
        common = ["--predict_file", str(files["dev"]), "--max_seq_length", "64", "--doc_stride", "16",
                  "--per_device_eval_batch_size", "3", "--report_to", "none"]  # fmt: skip
        return [
            "qa-train", "--model_name_or_path", str(files["long"]), "--train_file", str(files["train"]),
            "--do_train", "--do_eval", "--max_steps", "3", "--logging_steps", "1", "--learning_rate", "0.5",
            "--per_device_train_batch_size", str(per_device), "--seed", "42", "--output_dir", str(out),
            *common, *SGD,
            "::", "qa-evaluate", "--model_name_or_path", str(out), "--output_dir", str(out.parent / f"{out.name}-eval"),
            *common,
        ]  # fmt: skip

    one_out, ddp_out = tmp_path / "one", tmp_path / "ddp"
    (one,) = launch(tmp_path / "rec-one", command(one_out, 4), 1)
    ranks = launch(tmp_path / "rec-ddp", command(ddp_out, 2), 2)
    assert_same_training(one, ranks)
    assert_same_weights(one_out, ddp_out)
    for suffix in ("", "-eval"):
        ref_dir, got_dir = tmp_path / f"one{suffix}", tmp_path / f"ddp{suffix}"
        ref = json.loads((ref_dir / "results.json").read_text())
        got = json.loads((got_dir / "results.json").read_text())
        assert got["average"] == pytest.approx(ref["average"]) and got["windows"] == ref["windows"]
        assert got["world_size"] == 2 and ref["world_size"] == 1
        ref_pred = json.loads((ref_dir / "predictions.json").read_text())
        assert json.loads((got_dir / "predictions.json").read_text()) == ref_pred and len(ref_pred) == 9
    # two evaluations (end of qa train, qa evaluate): one process ran every window, the two ranks split them
    total = one["eval_windows"]
    assert (
        len(total) == 2 and [a + b for a, b in zip(*(r["eval_windows"] for r in ranks), strict=True)] == total
    )
    assert all(0 < n < t for r in ranks for n, t in zip(r["eval_windows"], total, strict=True))
