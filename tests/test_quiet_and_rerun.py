"""A finished study's rerun writes nothing; a pretrain resume reports only keys that are really missing; ``-q``
keeps the console to warnings and the closing summary (issue 23, items 4 and 5)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
from transformers import LongformerConfig, LongformerForMaskedLM, TrainerCallback

from helpers import REPO, tiny_qa_setup, write_wikitext
from longify.cli import main
from longify.study.jobs import plan_jobs
from longify.study.runner import JOB_FILE, job_dir, job_record
from longify.study.spec import load_spec

# --- item 4: a finished study's rerun writes nothing ---------------------------------------------------


def finished_study(tmp: Path) -> Path:
    """A study spec whose every job already has its final record and outputs (as a finished run leaves them)."""
    spec = tmp / "study.yaml"
    spec.write_text(
        f"""
output_dir: {tmp / "out"}
seeds: [1, 2]
models:
  short: {{source: {tmp / "src"}}}
  long: {{from: short, convert: {{max_pos: 256}}, pretrain: {{train_file_path: {tmp}/t.raw, max_steps: 4}}}}
finetune: {{train_file: {tmp}/train.json}}
evaluate:
  dev: {{task: squad, predict_file: {tmp}/dev.json}}
""",
        encoding="utf-8",
    )
    jobs = plan_jobs(load_spec(spec))
    out = tmp / "out"
    for i, job in enumerate(jobs):
        run = job.output(out)
        run.mkdir(parents=True)
        if job.stage == "evaluate":
            score = {"exact_match": 50.0 + i, "f1": 60.0 + i, "total": 6}
            results = {"per_language": {"en": score}, "average": score}
            (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
        if job.stage == "pretrain":
            metrics = {"initial": {"step": 0, "loss": 6.0}, "evals": [{"step": 4, "loss": 5.0}]}
            (run / "pretrain_metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        record = job_record(job, "done", seconds=1.0)
        (job_dir(out, job) / JOB_FILE).write_text(json.dumps(record), encoding="utf-8")
    return spec


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_a_finished_study_rerun_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = finished_study(tmp_path)
    out = tmp_path / "out"
    assert main(["study", "run", str(spec)]) == 0  # collects what the jobs left
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    curves = [json.loads(line) for line in (out / "pretrain_curves.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and [c["step"] for c in curves] == [0, 4]
    for path in out.rglob("*"):  # an hour ago: any write shows in the mtime, however coarse the clock
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 3600 * 10**9))
    before = snapshot(out)
    assert main(["study", "run", str(spec)]) == 0
    assert "10 done" in capsys.readouterr().out
    assert snapshot(out) == before


def test_a_rerun_still_rewrites_results_that_differ(tmp_path: Path) -> None:
    spec = finished_study(tmp_path)
    out = tmp_path / "out"
    assert main(["study", "run", str(spec)]) == 0
    good = (out / "results.jsonl").read_bytes()
    (out / "results.jsonl").write_text("stale\n", encoding="utf-8")
    (out / "pretrain_curves.jsonl").unlink()
    assert main(["study", "run", str(spec)]) == 0
    assert (out / "results.jsonl").read_bytes() == good and (out / "pretrain_curves.jsonl").is_file()


# --- item 5: the resume's missing keys ---------------------------------------------------------------------


def tiny_mlm(tie: bool) -> LongformerForMaskedLM:
    config = LongformerConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=40, attention_window=4, tie_word_embeddings=tie,
    )  # fmt: skip
    return LongformerForMaskedLM(config)


def test_tied_lm_head_keys_are_not_missing_but_others_are() -> None:
    from longify.mlm.trainer import really_missing

    tied = tiny_mlm(tie=True)
    # transformers 5 ties both: the decoder's weight to the word embeddings, its bias to lm_head.bias
    assert tied.lm_head.decoder.weight is tied.longformer.embeddings.word_embeddings.weight
    assert tied.lm_head.decoder.bias is tied.lm_head.bias
    saved_without = ["lm_head.decoder.weight", "lm_head.decoder.bias"]
    assert really_missing(tied, saved_without) == []
    assert really_missing(tied, [*saved_without, "lm_head.dense.weight"]) == ["lm_head.dense.weight"]
    # a tied key whose source is missing too was not loaded through it
    lost = ["longformer.embeddings.word_embeddings.weight", "lm_head.decoder.weight"]
    assert really_missing(tied, lost) == lost
    assert really_missing(tiny_mlm(tie=False), saved_without) == saved_without  # untied: really missing


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


@pytest.mark.integration
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


# --- item 5: -q is quiet --------------------------------------------------------------------------------

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


@pytest.mark.integration
def test_quiet_pretrain_prints_its_summary_only(small, tmp_path) -> None:
    run = cli("-q", "pretrain", *pretrain_argv(small, tmp_path / "run"))  # the Trainer's tqdm bar is on
    assert_quiet(run, "eval loss")


@pytest.mark.integration
def test_quiet_qa_train_prints_its_summary_only(small, tmp_path) -> None:
    run = cli(
        "qa", "train", "-q", "--model_name_or_path", str(small["model"]), "--do_train", "--do_eval",
        "--train_file", str(small["train"]), "--predict_file", str(small["dev"]), "--max_seq_length", "64",
        "--doc_stride", "16", "--per_device_train_batch_size", "8", "--num_train_epochs", "2",
        "--eval_strategy", "steps", "--eval_steps", "1", "--logging_steps", "1", "--report_to", "none",
        "--output_dir", str(tmp_path / "qa"),
    )  # fmt: skip
    assert_quiet(run, "longify qa train:")


@pytest.mark.integration
def test_without_quiet_the_output_is_as_before(small, tmp_path) -> None:
    run = cli("pretrain", *pretrain_argv(small, tmp_path / "run"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "{'loss'" in run.stdout and "{'eval_loss'" in run.stdout  # the Trainer's log lines
    assert "%|" in run.stderr and "Masking (eval)" in run.stderr and " INFO longify" in run.stderr


def test_quiet_lasts_for_its_command_only(tmp_path: Path, monkeypatch, capsys) -> None:
    """``main`` run in-process (tests, notebooks): -q's quiet does not outlive its command."""
    import datasets

    from longify import cli, console

    seen: list[tuple[bool, bool]] = []

    def fake_report(args) -> int:
        seen.append((console.is_quiet(), datasets.is_progress_bar_enabled()))
        return 0

    command = cli.Command("a stand-in", arguments=lambda p: p.add_argument("x"), run=fake_report)
    monkeypatch.setitem(cli.COMMANDS, "report", command)
    assert main(["-q", "report", "x"]) == 0
    assert main(["report", "x"]) == 0
    assert seen == [(True, False), (False, True)]
    assert not console.is_quiet() and datasets.is_progress_bar_enabled()
