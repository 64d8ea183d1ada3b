"""Crash-safe runs: a ``pretrain`` or ``qa train`` killed anywhere resumes to the result of an uninterrupted run
(bit-identical weights, the same metrics and training loss), a finished run's rerun changes nothing, and
``--overwrite_output_dir`` deletes late; changed defining flags are refused; ``qa evaluate`` takes the windows
the model was trained with.

Fault tests kill for real (SIGKILL from inside the save, tests/scripts/kill_in_save.py)."""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, qa_train_argv, read_json, same_weights, trainer_step, write_wikitext
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.args import parse_qa_args
from longify.qa.train import train_qa

KILL = REPO / "tests" / "scripts" / "kill_in_save.py"

# --------------------------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO / "src"),
    }


def _killed(command: str, when: str, step: int, argv: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, str(KILL), command, when, str(step), *argv],
        env=_env(),
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert res.returncode == -9, res.stderr.decode()[-3000:]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------- pretrain, real runs


@pytest.fixture(scope="module")
def wiki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wikitext(tmp_path_factory.mktemp("wiki"))


def _pretrain_cmd(model: Path, out: Path, data: Path, *extra: str) -> list[str]:
    """8 steps, checkpoints at 4 and 8, a loss logged every 3 steps (so some is not yet logged at a save)."""
    return [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128", "--attention_window", "32",
        "--train_file_path", str(data / "wiki.train.raw"), "--val_file_path", str(data / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--eval_strategy", "steps", "--eval_steps", "4", "--save_steps", "4",
        "--logging_steps", "3", "--max_steps", "8", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3", "--seed", "7", "--report_to", "none",
        "--max_eval_blocks", "4", "--data_cache_dir", str(out.parent / "cache"), "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_sources, wiki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (never modified: tests work on copies)."""
    out = tmp_path_factory.mktemp("pretrain") / "run"  # the name of the runs it is compared with (model card)
    pretrain(parse_pretrain_args(_pretrain_cmd(tiny_sources["roberta"], out, wiki)))
    return out


def _copy(ref: Path, to: Path) -> Path:
    shutil.copytree(ref, to)
    return to


def _same_pretrain_result(ref: Path, run: Path) -> None:
    same_weights(ref, run)
    a, b = read_json(ref / "pretrain_metrics.json"), read_json(run / "pretrain_metrics.json")
    for key in ("initial", "evals", "final", "steps", "train_loss"):
        assert a[key] == b[key], key
    assert (run / "README.md").read_bytes() == (ref / "README.md").read_bytes()  # titled by the folder
    assert (run / "README.md").read_text().splitlines()[4] == f"# {run.name}"
    assert trainer_step(run / "checkpoint-8") == 8 and not (run / "checkpoint-9").exists()


def test_pretrain_killed_inside_a_save_resumes_from_the_last_complete_checkpoint(
    tiny_sources, wiki, reference, tmp_path, caplog, capsys
) -> None:
    run = tmp_path / "run"
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki, "--save_total_limit", "1")
    _killed("pretrain", "in-save", 8, cmd)
    half = run / "checkpoint-8"
    assert (half / "model.safetensors").is_file() and not (half / "trainer_state.json").exists()
    with caplog.at_level(logging.INFO, logger="longify"):
        pretrain(parse_pretrain_args(cmd))  # the same command again
    assert f"skipping {half}: trainer_state.json" in caplog.text
    assert f"resuming from {run / 'checkpoint-4'}" in caplog.text
    _same_pretrain_result(reference, run)
    # the final log line (console, TensorBoard) shows the whole run's train_loss too, not sum / this call's steps
    printed = [ast.literal_eval(x) for x in capsys.readouterr().out.splitlines() if "'train_loss'" in x]
    whole = read_json(run / "pretrain_metrics.json")["train_loss"]
    assert len(printed) == 1 and float(printed[0]["train_loss"]) == pytest.approx(whole, rel=1e-3), printed
    assert (half / "longify_checkpoint.json").is_file()  # saved again, whole
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-8"]  # rotated once 8 was complete


def test_pretrain_checkpoint_without_optimizer_state_is_never_resumed_from(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = _copy(reference, tmp_path / "run")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (run / "checkpoint-8" / name).unlink()
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    with pytest.raises(
        LongifyError,
        match=r"checkpoint-8: incomplete checkpoint, optimizer.pt, scheduler.pt, rng_state.pth are missing",
    ):
        pretrain(parse_pretrain_args([*cmd, "--resume_from_checkpoint", str(run / "checkpoint-8")]))
    pretrain(parse_pretrain_args(cmd))  # resumes from checkpoint-4 and trains steps 5-8 again
    assert (run / "checkpoint-8" / "optimizer.pt").is_file()  # saved again, whole
    _same_pretrain_result(reference, run)


def test_pretrain_rerun_of_a_finished_run_changes_nothing(
    tiny_sources, wiki, reference, tmp_path, caplog
) -> None:
    run = _copy(reference, tmp_path / "run")
    before = _snapshot(run)
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    with caplog.at_level(logging.INFO, logger="longify"):
        record = pretrain(parse_pretrain_args(cmd))
    assert _snapshot(run) == before
    assert record["final"] == read_json(reference / "pretrain_metrics.json")["final"]
    assert "finished at step 8 already: nothing to do" in caplog.text
    # a larger --max_steps continues from the last checkpoint (HF semantics)
    pretrain(parse_pretrain_args([*cmd, "--max_steps", "10"]))
    assert (
        trainer_step(run / "checkpoint-10") == 10 and read_json(run / "pretrain_metrics.json")["steps"] == 10
    )


def test_pretrain_killed_before_its_export_finishes_without_training(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = tmp_path / "run"
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    _killed("pretrain", "after-save", 8, cmd)
    assert (run / "checkpoint-8" / "longify_checkpoint.json").is_file()
    assert not (run / "model.safetensors").exists()
    pretrain(parse_pretrain_args(cmd))
    _same_pretrain_result(reference, run)


def test_overwrite_output_dir_deletes_nothing_before_the_inputs_load(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = _copy(reference, tmp_path / "run")
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki, "--overwrite_output_dir")
    bad = [*cmd]
    bad[bad.index("--train_file_path") + 1] = str(wiki / "wiki.train.typo")
    with pytest.raises(LongifyError, match=r"wiki\.train\.typo"):
        pretrain(parse_pretrain_args(bad))
    assert (run / "checkpoint-4" / "optimizer.pt").is_file() and (run / "checkpoint-8").is_dir()
    assert (run / "pretrain_metrics.json").is_file()
    pretrain(parse_pretrain_args([*cmd, "--max_steps", "2", "--save_steps", "2"]))  # valid: starts afresh
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert read_json(run / "pretrain_metrics.json")["steps"] == 2


# ----------------------------------------------------------------------------------------- qa train


@pytest.fixture(scope="module")
def qa_reference(qa_setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted epoch-based QA run (never modified)."""
    ref = tmp_path_factory.mktemp("qa-ref") / "ref"
    train_qa(parse_qa_args(qa_train_argv(qa_setup, ref)))
    return ref


def _same_qa_result(ref: Path, run: Path) -> None:
    expected, got = read_json(ref / "results.json"), read_json(run / "results.json")
    last = max(trainer_step(c) for c in ref.glob("checkpoint-*"))
    assert last >= 7 and expected["train"]["global_step"] == last == got["train"]["global_step"]
    assert got["train"]["training_loss"] == expected["train"]["training_loss"]  # the whole run's, bit for bit
    assert got["average"] == expected["average"]
    assert read_json(run / "predictions.json") == read_json(ref / "predictions.json")
    same_weights(ref, run)
    assert not (run / f"checkpoint-{last + 1}").exists()


def test_qa_train_resume_keeps_the_whole_runs_loss_and_a_rerun_changes_nothing(
    qa_setup, qa_reference, tmp_path, caplog
) -> None:
    run = tmp_path / "run"
    cmd = qa_train_argv(qa_setup, run)
    _killed("qa", "in-save", 6, cmd)  # checkpoint-3 complete, checkpoint-6 half-written
    train_qa(parse_qa_args(cmd))
    _same_qa_result(qa_reference, run)

    before = _snapshot(run)
    with caplog.at_level(logging.INFO, logger="longify"):
        again = train_qa(parse_qa_args(cmd))  # an epoch-based run, finished: nothing to do
    assert _snapshot(run) == before
    assert (
        again["train"]["training_loss"] == read_json(qa_reference / "results.json")["train"]["training_loss"]
    )
    assert f"finished at step {again['train']['global_step']} already: nothing to do" in caplog.text


def test_qa_train_killed_before_its_export_finishes_without_training(
    qa_setup, qa_reference, tmp_path
) -> None:
    run = tmp_path / "run"
    cmd = qa_train_argv(qa_setup, run)
    last = max(trainer_step(c) for c in qa_reference.glob("checkpoint-*"))
    _killed("qa", "after-save", last, cmd)
    assert not (run / "results.json").exists() and not (run / "config.json").exists()
    train_qa(parse_qa_args(cmd))
    _same_qa_result(qa_reference, run)


def test_overwrite_with_a_data_typo_leaves_the_conversion_and_reuses_a_matching_one(
    tiny_sources, wiki, reference, tmp_path, caplog
) -> None:
    run = _copy(reference, tmp_path / "run")
    before = _snapshot(run)
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    bad = [*cmd, "--overwrite_output_dir", "--max_pos", "256"]
    bad[bad.index("--train_file_path") + 1] = str(wiki / "wiki.train.typo")
    with pytest.raises(LongifyError, match=r"wiki\.train\.typo"):
        pretrain(parse_pretrain_args(bad))
    assert _snapshot(run) == before  # converted/ included
    with caplog.at_level(logging.INFO, logger="longify"):
        pretrain(parse_pretrain_args(cmd))  # the unfinished-or-finished run's own command still works
    assert "nothing to do" in caplog.text
    weights = run / "converted" / "model.safetensors"
    inode = weights.stat().st_ino
    pretrain(parse_pretrain_args([*cmd, "--overwrite_output_dir", "--max_steps", "1", "--save_steps", "1"]))
    assert weights.stat().st_ino == inode  # the same request: the conversion is reused, not rewritten


def _best_is_not_last(model: Path, run: Path, wiki: Path) -> list[str]:
    """The best checkpoint by the highest evaluation loss: step 4, not the last (8)."""
    return _pretrain_cmd(model, run, wiki, "--save_total_limit", "1", "--load_best_model_at_end", "true",
                         "--metric_for_best_model", "loss", "--greater_is_better", "true")  # fmt: skip


def test_finished_run_with_best_model_at_end_is_a_no_op_and_checkpoints_honour_the_umask(
    tiny_sources, wiki, tmp_path, caplog
) -> None:
    run = tmp_path / "run"
    cmd = _best_is_not_last(tiny_sources["roberta"], run, wiki)
    old = os.umask(0o002)
    try:
        pretrain(parse_pretrain_args(cmd))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.glob("checkpoint-*/*")}
    assert set(modes.values()) == {0o664}, modes
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert read_json(run / "checkpoint-8" / "trainer_state.json")["best_model_checkpoint"].endswith(
        "checkpoint-4"
    )
    before = _snapshot(run)
    with caplog.at_level(logging.INFO, logger="longify"):
        pretrain(parse_pretrain_args(cmd))
    assert "finished at step 8 already: nothing to do" in caplog.text
    assert _snapshot(run) == before


def test_export_card_is_titled_by_the_output_folder(reference, tmp_path) -> None:
    from longify.mlm.export import export_checkpoint

    out = export_checkpoint(reference / "checkpoint-4", tmp_path / "exported")
    assert (out / "README.md").read_text().splitlines()[4] == "# exported"


def test_changed_defining_flags_are_refused_on_finished_and_resumed_runs(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = _copy(reference, tmp_path / "run")
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    before = _snapshot(run)
    for flags, said in (
        (["--learning_rate", "2e-3"], "--learning_rate 0.002 (the run was made with 0.001)"),
        (["--seed", "8"], "--seed 8 (the run was made with 7)"),
        (["--max_pos", "256"], "--max_pos 256 (the run was made with 128)"),
    ):
        with pytest.raises(LongifyError, match=re_escape(said)) as err:
            pretrain(parse_pretrain_args([*cmd, *flags]))
        assert "--overwrite_output_dir" in str(err.value) and "\n" not in str(err.value)
    assert _snapshot(run) == before
    shutil.rmtree(run / "checkpoint-8")  # unfinished: resumes from checkpoint-4
    with pytest.raises(
        LongifyError, match=re_escape("--per_device_train_batch_size 1 (the run was made with 2)")
    ):
        pretrain(parse_pretrain_args([*cmd, "--per_device_train_batch_size", "1"]))
    # not defining: cadence, logging, and a longer run
    pretrain(parse_pretrain_args([*cmd, "--logging_steps", "2", "--eval_steps", "8"]))
    assert trainer_step(run / "checkpoint-8") == 8


def test_resume_from_an_unmarked_checkpoint_says_what_its_train_loss_covers(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = _copy(reference, tmp_path / "run")
    shutil.rmtree(run / "checkpoint-8")
    (run / "checkpoint-4" / "longify_checkpoint.json").unlink()  # a plain HF checkpoint
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    pretrain(parse_pretrain_args([*cmd, "--resume_from_checkpoint", str(run / "checkpoint-4")]))
    record = read_json(run / "pretrain_metrics.json")
    assert record["train_loss_note"].startswith("train_loss covers steps 5..8 only")
    assert "train_loss_note" not in read_json(reference / "pretrain_metrics.json")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_qa_evaluate_takes_the_windows_the_model_was_trained_with(
    qa_setup, qa_reference, tmp_path, caplog
) -> None:
    """``qa evaluate`` of a ``qa train`` output without window flags: the training's --max_seq_length 64 and
    --doc_stride 16 (its longify_run.json), not the defaults 384 / 128; given flags still win."""
    from longify.qa.evaluate import evaluate_qa

    base = [
        "--model_name_or_path",
        str(qa_reference),
        "--predict_file",
        str(qa_setup["dev"]),
        "--report_to",
        "none",
    ]
    with caplog.at_level(logging.INFO, logger="longify"):
        evaluate_qa(parse_qa_args([*base, "--output_dir", str(tmp_path / "same")]))
    assert "--max_seq_length 64, --doc_stride 16: as" in caplog.text
    record = read_json(tmp_path / "same" / "results.json")["arguments"]["data"]
    assert (record["max_seq_length"], record["doc_stride"]) == (64, 16)
    assert read_json(tmp_path / "same" / "predictions.json") == read_json(qa_reference / "predictions.json")
    evaluate_qa(parse_qa_args([*base, "--output_dir", str(tmp_path / "own"), "--doc_stride", "8"]))
    record = read_json(tmp_path / "own" / "results.json")["arguments"]["data"]
    assert (record["max_seq_length"], record["doc_stride"]) == (64, 8)
