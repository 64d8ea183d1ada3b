"""`longify pretrain`: the seed's run_long_lm command on transformers 5, learning, resume, DDP, NaN guard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, LongformerForMaskedLM, TrainerCallback

from helpers import REPO, small_pretrain_argv, write_wikitext
from longify.cli import main
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain


@pytest.fixture(scope="module")
def wiki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wikitext(tmp_path_factory.mktemp("wikitext-103-raw"))


def run_squad_argv(model: Path, out: Path, logs: Path, data: Path, **small: str) -> list[str]:
    """The seed's RoBERTa command line, flag for flag; only paths and the `small` values differ."""
    values = {"max_steps": "6000", "eval_steps": "50", "save_steps": "500", **small}
    return [
        "--model_name_or_path", str(model),
        "--model_name", "roberta-tiny-4096-seed-42-fast-lm",
        "--output_dir", str(out),
        "--logging_dir", str(logs),
        "--val_file_path", str(data / "wiki.valid.raw"),
        "--train_file_path", str(data / "wiki.train.raw"),
        "--seed", "42",
        "--max_pos", "4096",
        "--adam_epsilon", "1e-8",
        "--warmup_steps", "500",
        "--learning_rate", "3e-5",
        "--weight_decay", "0.01",
        "--max_steps", values["max_steps"],
        "--evaluate_during_training",
        "--logging_steps", "50",
        "--eval_steps", values["eval_steps"],
        "--save_steps", values["save_steps"],
        "--max_grad_norm", "1.0",
        "--per_device_eval_batch_size", "2",
        "--per_device_train_batch_size", "1",
        "--gradient_accumulation_steps", "64",
        "--overwrite_output_dir",
        "--fp16",
        "--do_train",
        "--do_eval",
    ]  # fmt: skip


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta"])
def test_seed_command_runs_to_the_end(family, tiny_sources, wiki, tmp_path, capsys) -> None:
    """The seed's RoBERTa and XLM-R commands (identical flags) on tiny models and WikiText-format files."""
    out, logs = tmp_path / "models" / "run", tmp_path / "logs" / "run"
    argv = run_squad_argv(
        tiny_sources[family], out, logs, wiki, max_steps="2", eval_steps="1", save_steps="1"
    )
    assert main(["pretrain", *argv]) == 0
    assert "eval loss" in capsys.readouterr().out
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert isinstance(model, LongformerForMaskedLM) and model.config.max_position_embeddings == 4096 + 2
    assert not list(out.glob("*.pt")) and not (out / "trainer_state.json").exists()
    assert (out / "checkpoint-2" / "optimizer.pt").is_file()  # checkpoints keep what resuming needs
    assert list(logs.rglob("events.out.tfevents.*"))
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    for when in ("initial", "final"):
        assert {"loss", "perplexity", "bits_per_token", "pseudo_bits_per_char"} <= set(metrics[when])
    assert metrics["initial"]["step"] == 0 and [e["step"] for e in metrics["evals"]] == [1, 2]
    assert metrics["world_size"] == 1 and metrics["block_size"] == 4096
    run = json.loads((out / "longify_run.json").read_text())
    assert any("--evaluate_during_training" in n for n in run["translated_flags"])
    layer = model.longformer.encoder.layer[0].attention.self
    assert torch.equal(layer.query_global.weight, layer.query.weight)


def test_tiny_model_learns(tiny_sources, wiki, tmp_path) -> None:
    cmd = small_pretrain_argv(
        tiny_sources["roberta"], tmp_path / "run", wiki, 40, "--per_device_train_batch_size", "4"
    )
    record = pretrain(parse_pretrain_args([*cmd, "--learning_rate", "3e-3"]))
    first, last = record["initial"], record["final"]
    assert last["loss"] < first["loss"] - 0.5, (first, last)
    assert last["pseudo_bits_per_char"] < first["pseudo_bits_per_char"]
    assert (
        first["bits_per_token"] > last["bits_per_token"]
    )  # the metric itself: tests/unit/test_mlm_metrics.py


def test_eval_masks_fixed_across_runs(tiny_sources, wiki, tmp_path) -> None:
    cmd = [a for a in small_pretrain_argv(tiny_sources["roberta"], tmp_path / "a", wiki) if a != "--do_train"]
    a = pretrain(parse_pretrain_args(cmd))["initial"]
    cmd = [a for a in small_pretrain_argv(tiny_sources["roberta"], tmp_path / "b", wiki) if a != "--do_train"]
    b = pretrain(parse_pretrain_args(cmd))["initial"]
    assert a["loss"] == b["loss"] and a["masked_tokens"] == b["masked_tokens"]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO / "src"),
    }


def test_kill_and_resume_gives_the_same_result(tiny_sources, wiki, tmp_path) -> None:
    ref = tmp_path / "ref"
    pretrain(parse_pretrain_args(small_pretrain_argv(tiny_sources["roberta"], ref, wiki)))
    run = tmp_path / "run"
    cmd = small_pretrain_argv(tiny_sources["roberta"], run, wiki)
    script = REPO / "tests" / "scripts" / "pretrain_with_kill.py"
    killed = subprocess.run(
        [sys.executable, str(script), "6", *cmd], env=_env(), capture_output=True, check=False
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert (run / "checkpoint-4").is_dir() and not (run / "model.safetensors").exists()
    pretrain(parse_pretrain_args(cmd))  # the same command again: picks up checkpoint-4
    a, b = load_file(ref / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ma = json.loads((ref / "pretrain_metrics.json").read_text())
    mb = json.loads((run / "pretrain_metrics.json").read_text())
    assert ma["final"] == mb["final"] and ma["evals"] == mb["evals"]


class _Poison(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.lm_head.dense.weight.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_sources, wiki, tmp_path) -> None:
    out = tmp_path / "run"
    cmd = small_pretrain_argv(tiny_sources["roberta"], out, wiki, 8, "--save_steps", "2")
    with pytest.raises(LongifyError, match=r"training loss is nan at step 4.*checkpoint-2"):
        pretrain(parse_pretrain_args(cmd), callbacks=[_Poison(3)])
    assert (out / "checkpoint-2").is_dir() and not (out / "model.safetensors").exists()


def test_nan_weights_are_never_checkpointed(tiny_sources, wiki, tmp_path) -> None:
    # weights turn NaN on a save step, before any loss could show it
    out = tmp_path / "run"
    cmd = small_pretrain_argv(tiny_sources["roberta"], out, wiki, 8, "--save_steps", "2")
    with pytest.raises(
        LongifyError, match=r"parameter lm_head.dense.weight is not finite after step 4.*checkpoint-2"
    ):
        pretrain(parse_pretrain_args(cmd), callbacks=[_Poison(4)])
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()


def test_export_checkpoint_cli(tiny_sources, wiki, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    pretrain(parse_pretrain_args(small_pretrain_argv(tiny_sources["roberta"], out, wiki)))
    assert main(["export", str(out / "checkpoint-4"), str(tmp_path / "clean")]) == 0
    clean = tmp_path / "clean"
    assert {p.name for p in clean.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "README.md",
        "tokenizer.json",
    }
    assert not list(clean.glob("*.pt")) and not (clean / "trainer_state.json").exists()
    AutoModelForMaskedLM.from_pretrained(clean)
    assert "A Longformer after long masked-LM pretraining with longify." in (clean / "README.md").read_text()
    assert main(["export", str(out), str(tmp_path / "run-clean")]) == 0  # the run folder: pretrained too
    assert "after long masked-LM pretraining" in (tmp_path / "run-clean" / "README.md").read_text()
    code = main(["export", str(tmp_path / "nope"), str(tmp_path / "x")])
    assert code == 2 and "no config.json" in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="no torchrun",
)
def test_torchrun_two_processes(tiny_sources, wiki, tmp_path) -> None:
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "longify.cli", "-q", "pretrain",
           *small_pretrain_argv(tiny_sources["roberta"], out, wiki, 4)]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    AutoModelForMaskedLM.from_pretrained(out)
