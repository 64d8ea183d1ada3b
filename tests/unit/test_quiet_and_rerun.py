"""A finished study's rerun writes nothing but still rewrites results that differ; tied LM-head keys are never
reported missing; ``-q`` lasts for its command only (``main`` run in-process). What real runs print:
tests/integration/test_run_output.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from transformers import LongformerConfig, LongformerForMaskedLM

from longify.cli import main
from longify.study.jobs import plan_jobs
from longify.study.runner import JOB_FILE, job_dir, job_record
from longify.study.spec import load_spec

# --- a finished study's rerun writes nothing ---------------------------------------------------------


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


# --- the resume's missing keys -----------------------------------------------------------------------------


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
