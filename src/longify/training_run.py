"""Training runs: the policy of a run folder (``--output_dir`` of ``pretrain`` and ``qa train``) that
resumes, refuses, finishes or replaces the run in it. Which checkpoint a run resumes from (the newest complete
one, or ``--resume_from_checkpoint`` checked), whether the run is already finished, and what
``--overwrite_output_dir`` clears.

Layer 4 of the import layers (see ``[tool.importlinter]`` in pyproject.toml): below the crash-safe Trainer
checkpoints and the stages, above the output folders; the shared training-run recipe grows here."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from longify.checkpoint_files import (
    MARK,
    STATE,
    checkpoint_step,
    checkpoints_in,
    damage_reason,
    incomplete_reason,
    newest_complete,
    note_unhashed,
    read_mark,
)
from longify.errors import LongifyError
from longify.fileio import check_writable

logger = logging.getLogger(__name__)


def check_requested(path: str | Path, world_size: int = 1) -> Path:
    """``--resume_from_checkpoint PATH``, checked: a one-line error naming it and what it lacks."""
    ckpt = Path(path)
    flag = f"--resume_from_checkpoint {ckpt}"
    if not ckpt.is_dir():
        raise LongifyError(f"{flag}: no such checkpoint folder")
    reason = incomplete_reason(ckpt, world_size, need_mark=False)
    if reason is not None:
        raise LongifyError(f"{flag}: incomplete checkpoint, {reason} (give a complete checkpoint-N folder)")
    if (damage := damage_reason(ckpt)) is not None:
        raise LongifyError(f"{flag}: damaged checkpoint, {damage}; give another checkpoint-N folder")
    if read_mark(ckpt) is None:
        logger.warning("%s has no %s (not saved by longify?): resuming from it as asked", ckpt, MARK)
    note_unhashed(ckpt)
    return ckpt


def resume_checkpoint(
    output_dir: str | Path, *, requested: str | None, overwrite: bool, world_size: int = 1
) -> str | None:
    """The Trainer checkpoint to resume from: ``requested`` (``--resume_from_checkpoint``, refused with one
    line when incomplete), else the newest *complete* ``checkpoint-N`` in ``output_dir`` (each newer,
    unfinished or damaged one is logged and skipped); none with ``overwrite`` (``--overwrite_output_dir``),
    which deletes nothing here: see ``clear_previous_run``, called once the inputs have loaded."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise LongifyError(f"--output_dir {output_dir}: exists and is not a directory")
    check_writable(output_dir)
    if requested:
        ckpt = check_requested(requested, world_size)
        _check_nothing_newer(output_dir, ckpt, overwrite)
        return str(ckpt)
    if overwrite or not output_dir.is_dir():
        return None
    last = newest_complete(output_dir, world_size)
    if last:
        logger.info("resuming from %s (pass --overwrite_output_dir to start from scratch)", last)
    return str(last) if last else None


def _check_nothing_newer(output_dir: Path, ckpt: Path, overwrite: bool) -> None:
    """``--resume_from_checkpoint``: refuse one with newer checkpoints beside it in ``output_dir`` (the next
    automatic resume would pick those, and rotation would count them as newer than what this run saves);
    under ``--overwrite_output_dir`` one inside ``output_dir`` (it would be cleared with the old run)."""
    flag = f"--resume_from_checkpoint {ckpt}"
    inside = output_dir.is_dir() and ckpt.resolve().parent == output_dir.resolve()
    if overwrite:
        if inside:
            raise LongifyError(
                f"{flag}: it is in --output_dir {output_dir}, which --overwrite_output_dir clears; "
                "drop one of the two flags, or give another --output_dir"
            )
        return
    step = checkpoint_step(ckpt) or 0
    newer = [p.name for s, p in checkpoints_in(output_dir) if s > step]
    if newer:
        raise LongifyError(
            f"{flag}: {output_dir} holds newer checkpoints ({', '.join(newer)}) from a later point of a run; "
            "pass --overwrite_output_dir to replace that run, or give another --output_dir"
        )


# what a run writes into its --output_dir (removed by --overwrite_output_dir): run records and metrics,
# predictions, the saved model and tokenizer; lock files and TensorBoard's runs/ stay (HF never deletes logs)
RUN_RECORDS = (
    "checkpoint-*",
    "longify_run.json",
    "pretrain_metrics.json",
    "results.json",
    "predictions.json",
    "nbest_predictions.json",
    "question_scores.jsonl",
    "null_odds.json",
    "metrics.json",
)
MODEL_FILES = (
    "README.md",
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "training_args.bin",
    "tokenizer*.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "chat_template.*",
)


def clear_previous_run(output_dir: str | Path, *also: str, source: str | None = None) -> None:
    """``--overwrite_output_dir``: remove the earlier run's outputs (``RUN_RECORDS``, ``MODEL_FILES`` and the
    names ``also``) from ``output_dir``; called just before training starts, after every input was validated
    and loaded. The model files stay when ``source`` (the model trained) is ``output_dir`` itself (a crash
    before the new model is saved must not lose it). Lock files, TensorBoard's ``runs/`` and anything else
    in the folder stay."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    patterns = [*RUN_RECORDS, *also]
    if source is not None and Path(source).resolve() == output_dir.resolve():
        logger.info(
            "--overwrite_output_dir: keeping the model files of %s, the model this run starts from", source
        )
    else:
        patterns += MODEL_FILES
    doomed = {p for pattern in patterns for p in output_dir.glob(pattern)}
    for path in sorted(doomed):
        logger.info("--overwrite_output_dir: removing %s", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def training_done(ckpt: str | Path | None, max_steps: int, num_train_epochs: float) -> bool:
    """Whether ``ckpt`` is at (or past) the last step of a run with these flags, from its trainer state
    alone (no data needed): ``--max_steps``, or the same epochs as the run that saved it."""
    if not ckpt:
        return False
    try:
        state = json.loads((Path(ckpt) / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    step = int(state.get("global_step", 0))
    if max_steps > 0:
        return step >= max_steps
    planned = state.get("max_steps")
    return state.get("num_train_epochs") == num_train_epochs and planned is not None and step >= planned
