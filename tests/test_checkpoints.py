"""Crash-safe checkpoints, reruns that change nothing, and ``--overwrite_output_dir`` that deletes late.

Fault tests kill for real (SIGKILL from inside the save, tests/scripts/kill_in_save.py) and compare the rerun
with an uninterrupted run: bit-identical weights, the same metrics and training loss.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO, tiny_qa_setup, write_wikitext
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


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _step(ckpt: Path) -> int:
    return _json(ckpt / "trainer_state.json")["global_step"]


def _fake_checkpoint(folder: Path, step: int, *, mark: bool = True, skip: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder with the files HF writes (tiny stand-ins), completed the way longify does."""
    from longify.checkpoints import mark_complete

    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (ckpt / name).write_bytes(b"x" * 10)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if mark:
        mark_complete(ckpt, {"total": 0.0, "pending": [0.0], "last_logged_step": step, "step": step})
    for name in skip:
        (ckpt / name).unlink()
    return ckpt


# ------------------------------------------------------------------------------------------------ unit


def test_newest_complete_skips_unfinished_and_damaged_ones(tmp_path: Path, caplog) -> None:
    from longify.checkpoints import newest_complete

    _fake_checkpoint(tmp_path, 2)
    good = _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 6, skip=("rng_state.pth",))  # removed after the save
    _fake_checkpoint(tmp_path, 8, mark=False)  # killed before the mark
    _fake_checkpoint(tmp_path, 10, mark=False, skip=("optimizer.pt", "scheduler.pt", "trainer_state.json"))
    (tmp_path / "checkpoint-12").write_text("not a folder")
    with caplog.at_level(logging.INFO, logger="longify"):
        assert newest_complete(tmp_path) == good
    log = caplog.text
    assert "checkpoint-10: trainer_state.json, optimizer.pt, scheduler.pt are missing" in log
    assert "checkpoint-8: no longify_checkpoint.json" in log
    assert "checkpoint-6: rng_state.pth is missing" in log
    assert "checkpoint-2" not in log
    assert newest_complete(tmp_path / "nothing-here") is None


def test_explicit_resume_of_an_incomplete_checkpoint_is_one_line(tmp_path: Path, caplog) -> None:
    from longify.outdir import resume_checkpoint

    ckpt = _fake_checkpoint(tmp_path, 4, skip=("optimizer.pt",))
    with pytest.raises(
        LongifyError, match=r"checkpoint-4: incomplete checkpoint, optimizer.pt is missing"
    ) as err:
        resume_checkpoint(tmp_path, requested=str(ckpt), overwrite=False)
    assert "\n" not in str(err.value)
    with pytest.raises(LongifyError, match="no such checkpoint folder"):
        resume_checkpoint(tmp_path, requested=str(tmp_path / "checkpoint-99"), overwrite=False)
    legacy = _fake_checkpoint(tmp_path, 6, mark=False)  # a plain HF checkpoint: taken when asked for
    assert resume_checkpoint(tmp_path, requested=str(legacy), overwrite=False) == str(legacy)
    assert resume_checkpoint(tmp_path, requested=None, overwrite=False) is None  # never automatically
    assert resume_checkpoint(tmp_path, requested=None, overwrite=True) is None
    assert legacy.is_dir() and ckpt.is_dir()  # --overwrite_output_dir alone deletes nothing


def test_rotation_counts_complete_checkpoints_only(tmp_path: Path) -> None:
    from longify.checkpoints import rotate

    for step in (2, 4, 6, 8):
        _fake_checkpoint(tmp_path, step)
    _fake_checkpoint(tmp_path, 5, mark=False)
    _fake_checkpoint(tmp_path, 7, skip=("optimizer.pt",))
    _fake_checkpoint(tmp_path, 10, mark=False)  # newer than any complete one: another save's, left alone
    rotate(tmp_path, 2, None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-6", "checkpoint-8"]
    rotate(tmp_path, 1, str(tmp_path / "checkpoint-6"), 1)  # the best one stays beside the newest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-6", "checkpoint-8"]
    rotate(tmp_path, 1, None, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-8"]


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
    _same_weights(ref, run)
    a, b = _json(ref / "pretrain_metrics.json"), _json(run / "pretrain_metrics.json")
    for key in ("initial", "evals", "final", "steps", "train_loss"):
        assert a[key] == b[key], key
    assert (run / "README.md").read_bytes() == (ref / "README.md").read_bytes()  # titled by the folder
    assert (run / "README.md").read_text().splitlines()[4] == f"# {run.name}"
    assert _step(run / "checkpoint-8") == 8 and not (run / "checkpoint-9").exists()


@pytest.mark.integration
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
    whole = _json(run / "pretrain_metrics.json")["train_loss"]
    assert len(printed) == 1 and float(printed[0]["train_loss"]) == pytest.approx(whole, rel=1e-3), printed
    assert (half / "longify_checkpoint.json").is_file()  # saved again, whole
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-8"]  # rotated once 8 was complete


@pytest.mark.integration
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


@pytest.mark.integration
def test_pretrain_rerun_of_a_finished_run_changes_nothing(
    tiny_sources, wiki, reference, tmp_path, caplog
) -> None:
    run = _copy(reference, tmp_path / "run")
    before = _snapshot(run)
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    with caplog.at_level(logging.INFO, logger="longify"):
        record = pretrain(parse_pretrain_args(cmd))
    assert _snapshot(run) == before
    assert record["final"] == _json(reference / "pretrain_metrics.json")["final"]
    assert "finished at step 8 already: nothing to do" in caplog.text
    # a larger --max_steps continues from the last checkpoint (HF semantics)
    pretrain(parse_pretrain_args([*cmd, "--max_steps", "10"]))
    assert _step(run / "checkpoint-10") == 10 and _json(run / "pretrain_metrics.json")["steps"] == 10


@pytest.mark.integration
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


@pytest.mark.integration
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
    assert _json(run / "pretrain_metrics.json")["steps"] == 2


# ----------------------------------------------------------------------------------------- qa train


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_qa_setup(tmp_path_factory.mktemp("qa-ckpt"), 12, 6)


def _qa_cmd(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """Epoch-based (2 epochs), a checkpoint every 3 steps, a loss logged every 4."""
    return [
        "--model_name_or_path", str(s["model"]), "--do_train", "--do_eval", "--seed", "42",
        "--train_file", str(s["train"]), "--predict_file", str(s["dev"]), "--per_device_train_batch_size", "4",
        "--learning_rate", "5e-3", "--num_train_epochs", "2", "--max_seq_length", "64", "--doc_stride", "16",
        "--save_steps", "3", "--logging_steps", "4", "--report_to", "none", "--disable_tqdm", "true",
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def qa_reference(qa_setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted epoch-based QA run (never modified)."""
    ref = tmp_path_factory.mktemp("qa-ref") / "ref"
    train_qa(parse_qa_args(_qa_cmd(qa_setup, ref)))
    return ref


def _same_qa_result(ref: Path, run: Path) -> None:
    expected, got = _json(ref / "results.json"), _json(run / "results.json")
    last = max(_step(c) for c in ref.glob("checkpoint-*"))
    assert last >= 7 and expected["train"]["global_step"] == last == got["train"]["global_step"]
    assert got["train"]["training_loss"] == expected["train"]["training_loss"]  # the whole run's, bit for bit
    assert got["average"] == expected["average"]
    assert _json(run / "predictions.json") == _json(ref / "predictions.json")
    _same_weights(ref, run)
    assert not (run / f"checkpoint-{last + 1}").exists()


@pytest.mark.integration
def test_qa_train_resume_keeps_the_whole_runs_loss_and_a_rerun_changes_nothing(
    qa_setup, qa_reference, tmp_path, caplog
) -> None:
    run = tmp_path / "run"
    cmd = _qa_cmd(qa_setup, run)
    _killed("qa", "in-save", 6, cmd)  # checkpoint-3 complete, checkpoint-6 half-written
    train_qa(parse_qa_args(cmd))
    _same_qa_result(qa_reference, run)

    before = _snapshot(run)
    with caplog.at_level(logging.INFO, logger="longify"):
        again = train_qa(parse_qa_args(cmd))  # an epoch-based run, finished: nothing to do
    assert _snapshot(run) == before
    assert again["train"]["training_loss"] == _json(qa_reference / "results.json")["train"]["training_loss"]
    assert f"finished at step {again['train']['global_step']} already: nothing to do" in caplog.text


@pytest.mark.integration
def test_qa_train_killed_before_its_export_finishes_without_training(
    qa_setup, qa_reference, tmp_path
) -> None:
    run = tmp_path / "run"
    cmd = _qa_cmd(qa_setup, run)
    last = max(_step(c) for c in qa_reference.glob("checkpoint-*"))
    _killed("qa", "after-save", last, cmd)
    assert not (run / "results.json").exists() and not (run / "config.json").exists()
    train_qa(parse_qa_args(cmd))
    _same_qa_result(qa_reference, run)


@pytest.mark.integration
def test_qa_overwrite_deletes_nothing_before_the_inputs_load(qa_setup, tmp_path) -> None:
    out = tmp_path / "out"
    earlier = _fake_checkpoint(out, 3)
    cmd = _qa_cmd(qa_setup, out, "--overwrite_output_dir")
    cmd[cmd.index("--train_file") + 1] = str(qa_setup["root"] / "train.typo.json")
    with pytest.raises(LongifyError, match=r"train\.typo\.json"):
        train_qa(parse_qa_args(cmd))
    assert (earlier / "optimizer.pt").is_file()


# --------------------------------------------------------------------------- review of issue 8: fixes


def test_overwrite_clears_every_output_of_the_previous_run(tmp_path: Path) -> None:
    from longify.locks import INSIDE_NAME
    from longify.outdir import clear_previous_run

    out = tmp_path / "out"
    _fake_checkpoint(out, 3)
    run_files = ["results.json", "predictions.json", "nbest_predictions.json", "config.json",
                 "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.json", "merges.txt", "README.md", "longify_run.json", "pretrain_metrics.json"]  # fmt: skip
    for name in [*run_files, INSIDE_NAME, "runs/Nov01/events.out.tfevents.1", "notes.txt"]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}")
    clear_previous_run(out)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == [INSIDE_NAME, "notes.txt", "runs/Nov01/events.out.tfevents.1"]
    # fine-tuning the model of the folder itself: its files stay until the new model replaces them
    for name in ["config.json", "model.safetensors", "results.json"]:
        (out / name).write_text("{}")
    clear_previous_run(out, source=str(out))
    assert (
        sorted(p.name for p in out.glob("*.json")) == ["config.json"]
        and (out / "model.safetensors").is_file()
    )


def test_explicit_resume_with_newer_checkpoints_beside_it_is_refused(tmp_path: Path) -> None:
    from longify.outdir import resume_checkpoint

    four = _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 12)
    with pytest.raises(
        LongifyError, match=r"newer checkpoints \(checkpoint-12\).*--overwrite_output_dir"
    ) as err:
        resume_checkpoint(tmp_path, requested=str(four), overwrite=False)
    assert "\n" not in str(err.value)
    with pytest.raises(LongifyError, match="which --overwrite_output_dir clears"):
        resume_checkpoint(tmp_path, requested=str(four), overwrite=True)
    elsewhere = tmp_path / "other"
    copy = shutil.copytree(four, elsewhere / "checkpoint-4")
    assert resume_checkpoint(tmp_path, requested=str(copy), overwrite=True) == str(copy)
    assert resume_checkpoint(elsewhere, requested=str(copy), overwrite=False) == str(copy)


def test_rotation_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    from longify.checkpoints import rotate

    _fake_checkpoint(tmp_path, 4)
    _fake_checkpoint(tmp_path, 12)  # left from an earlier run
    eight = _fake_checkpoint(tmp_path, 8)  # just saved by this one
    rotate(tmp_path, 1, None, 1, eight)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-8"]


@pytest.mark.integration
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


def test_span_loss_does_not_depend_on_padding(qa_setup) -> None:
    from longify.qa.features import collator_for
    from longify.qa.models import load_qa_model, load_tokenizer
    from longify.qa.train import QATrainer

    model = load_qa_model(str(qa_setup["model"]), "fast").eval()
    tokenizer = load_tokenizer(str(qa_setup["model"]))
    collate = collator_for(tokenizer, model.config)
    g = torch.Generator().manual_seed(0)
    windows = []
    for length, start, end in ((20, 3, 5), (50, 30, 33)):  # padded alone to 32 and 64
        ids = torch.randint(5, 100, (length,), generator=g).tolist()
        windows.append({"input_ids": ids, "attention_mask": [1] * length, "start_positions": start,
                        "global_attention_mask": [1] * 4 + [0] * (length - 4),
                        "end_positions": end})  # fmt: skip
    with torch.no_grad():
        alone = [float(QATrainer.compute_loss(None, model, collate([w]))) for w in windows]  # type: ignore[arg-type]
        both = float(QATrainer.compute_loss(None, model, collate(windows)))  # type: ignore[arg-type]
        # the oracle of one window: a softmax over its own tokens only
        out = model(**{k: v for k, v in collate(windows[:1]).items() if "positions" not in k})
        own = out.start_logits[0, :20].log_softmax(-1)[3], out.end_logits[0, :20].log_softmax(-1)[5]
    assert alone[0] == pytest.approx(-float(own[0] + own[1]) / 2, rel=1e-5)
    assert both == pytest.approx(sum(alone) / 2, rel=1e-5)


def _best_is_not_last(model: Path, run: Path, wiki: Path) -> list[str]:
    """The best checkpoint by the highest evaluation loss: step 4, not the last (8)."""
    return _pretrain_cmd(model, run, wiki, "--save_total_limit", "1", "--load_best_model_at_end", "true",
                         "--metric_for_best_model", "loss", "--greater_is_better", "true")  # fmt: skip


@pytest.mark.integration
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
    assert _json(run / "checkpoint-8" / "trainer_state.json")["best_model_checkpoint"].endswith(
        "checkpoint-4"
    )
    before = _snapshot(run)
    with caplog.at_level(logging.INFO, logger="longify"):
        pretrain(parse_pretrain_args(cmd))
    assert "finished at step 8 already: nothing to do" in caplog.text
    assert _snapshot(run) == before


@pytest.mark.integration
def test_export_card_is_titled_by_the_output_folder(reference, tmp_path) -> None:
    from longify.mlm.export import export_checkpoint

    out = export_checkpoint(reference / "checkpoint-4", tmp_path / "exported")
    assert (out / "README.md").read_text().splitlines()[4] == "# exported"


@pytest.mark.integration
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
    assert _step(run / "checkpoint-8") == 8


@pytest.mark.integration
def test_resume_from_an_unmarked_checkpoint_says_what_its_train_loss_covers(
    tiny_sources, wiki, reference, tmp_path
) -> None:
    run = _copy(reference, tmp_path / "run")
    shutil.rmtree(run / "checkpoint-8")
    (run / "checkpoint-4" / "longify_checkpoint.json").unlink()  # a plain HF checkpoint
    cmd = _pretrain_cmd(tiny_sources["roberta"], run, wiki)
    pretrain(parse_pretrain_args([*cmd, "--resume_from_checkpoint", str(run / "checkpoint-4")]))
    record = _json(run / "pretrain_metrics.json")
    assert record["train_loss_note"].startswith("train_loss covers steps 5..8 only")
    assert "train_loss_note" not in _json(reference / "pretrain_metrics.json")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.integration
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
    record = _json(tmp_path / "same" / "results.json")["arguments"]["data"]
    assert (record["max_seq_length"], record["doc_stride"]) == (64, 16)
    assert _json(tmp_path / "same" / "predictions.json") == _json(qa_reference / "predictions.json")
    evaluate_qa(parse_qa_args([*base, "--output_dir", str(tmp_path / "own"), "--doc_stride", "8"]))
    record = _json(tmp_path / "own" / "results.json")["arguments"]["data"]
    assert (record["max_seq_length"], record["doc_stride"]) == (64, 8)
