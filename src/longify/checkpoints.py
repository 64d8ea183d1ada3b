"""Crash-safe Trainer checkpoints, shared by ``longify pretrain`` and ``longify qa train``.

- A checkpoint is *complete* once ``longify_checkpoint.json`` is in it: written last (atomically, after
  every process wrote its files), it lists each file with its size and SHA-256, and the step. A save killed
  half-way (SIGKILL, Ctrl-C, full disk) leaves a folder without it, which resuming skips and rotation never
  keeps over complete ones. A full disk during a save is one line naming the file being written.
- Resuming verifies the content too: a checkpoint whose files differ from their save (sha256), or whose
  trainer state names another step than its folder and mark, is skipped (automatic resume, the NaN guard's
  "last good" one) or refused (``--resume_from_checkpoint``). Marks of earlier longify versions (no hashes)
  are checked by size, with a warning.
- Resuming needs optimizer, scheduler and RNG state as well as the weights: a checkpoint without them is
  skipped (automatic resume) or refused (``--resume_from_checkpoint``), never silently used.
- The mark also carries the training-loss accumulators, so a resumed run reports the training loss of the
  whole run (bit for bit that of an uninterrupted one), and a run whose last checkpoint is its final step is
  finished from it without training a step more.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from longify.artifacts import TRAINER_STATE_FILE
from longify.checkpoint_files import (
    MARK,
    being_written,
    checkpoint_step,
    checkpoints_in,
    incomplete_reason,
    mark_complete,
    newest_complete,
    read_mark,
)
from longify.errors import LongifyError
from longify.fileio import honour_umask_tree, write_failure

logger = logging.getLogger(__name__)


def rotate(
    folder: Path, limit: int | None, best: str | None, world_size: int, written: Path | None = None
) -> None:
    """``save_total_limit`` over *complete* checkpoints (HF's rule: the newest and the best are kept);
    unfinished folders older than the newest complete one are removed, never kept in its place.
    ``written``: the checkpoint just saved, the newest whatever the numbers beside it say (never deleted)."""
    if not limit or limit <= 0:
        return
    found = checkpoints_in(folder)
    complete = [(s, c) for s, c in found if incomplete_reason(c, world_size, need_state=False) is None]
    if written is not None and (newest := next((sc for sc in complete if sc[1] == written), None)):
        complete = [sc for sc in complete if sc != newest] + [newest]
    if not complete:
        return
    newest_step, newest_path = complete[-1]
    best_path = Path(best) if best else None
    older = [c for _, c in complete[:-1] if c != best_path]
    keep = max(limit, 2 if len(older) < len(complete) - 1 else 1)  # the best one is kept beside the newest
    doomed = older[: max(0, len(complete) - keep)]
    doomed += [c for s, c in found if s < newest_step and (s, c) not in complete]
    doomed = [c for c in doomed if c != newest_path]
    for ckpt in doomed:
        logger.info("deleting %s (save_total_limit %d)", ckpt, limit)
        shutil.rmtree(ckpt, ignore_errors=True)


def run_loss(mark: dict[str, Any] | None, rank: int) -> tuple[float, float] | None:
    """``(logged sum, not yet logged)`` training loss of process ``rank`` at a checkpoint, from its mark."""
    loss = (mark or {}).get("loss")
    if not loss:
        return None
    pending = loss.get("pending") or []
    return float(loss["total"]), float(pending[rank]) if rank < len(pending) else 0.0


class _RestoreLoss(TrainerCallback):
    """Puts the resumed checkpoint's loss accumulators back once the training loop has reset them."""

    def __init__(self, trainer: CrashSafeCheckpoints) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._restore_loss()


class CrashSafeCheckpoints:
    """Mixin for a ``transformers.Trainer`` subclass (list it before ``Trainer``): complete-or-unusable
    checkpoints, rotation over complete ones, and a whole-run ``training_loss`` across resumes."""

    # attributes of transformers.Trainer this mixin works with
    args: Any
    state: Any
    accelerator: Any
    _tr_loss: torch.Tensor
    _total_loss_scalar: float
    _globalstep_last_logged: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_mark: dict[str, Any] | None = None
        self._whole_run_loss = False
        self._partial_from: int | None = None
        # training seconds of the run before this call's start (None: unknown, resumed from an older mark)
        self._seconds_before: float | None = 0.0
        self._train_started: float | None = None
        self._run_seconds: float | None = None
        self.loss_note: str | None = None  # set when the training loss covers only part of the run
        self.add_callback(_RestoreLoss(self))  # type: ignore[attr-defined]

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> TrainOutput:
        if resume_from_checkpoint is True:
            found = newest_complete(self.args.output_dir, self.args.world_size)
            if found is None:
                raise LongifyError(f"{self.args.output_dir}: no complete checkpoint to resume from")
            resume_from_checkpoint = str(found)
        self._resume_mark = read_mark(resume_from_checkpoint) if resume_from_checkpoint else None
        self._seconds_before = (
            (self._resume_mark or {}).get("train_seconds") if resume_from_checkpoint else 0.0
        )
        self._train_started = time.time()
        self._whole_run_loss = False
        # a checkpoint without the mark (a plain HF one) has no loss accumulators: the loss of the steps
        # before it is not recovered (trainer_state's log_history holds rounded means only); the record says so
        self._partial_from = (
            checkpoint_step(resume_from_checkpoint)
            if resume_from_checkpoint and run_loss(self._resume_mark, 0) is None
            else None
        )
        output = super().train(resume_from_checkpoint or None, *args, **kwargs)  # type: ignore[misc]
        self._run_seconds = self._seconds_so_far()
        return output

    def run_seconds(self) -> float | None:
        """The whole run's training seconds (across resumes; read from the mark when the run was finished from
        its last checkpoint), once ``train`` or ``finish_from`` returned; None when a part is unknown."""
        return self._run_seconds

    def _restore_loss(self) -> None:
        mark, self._resume_mark = self._resume_mark, None
        loss = run_loss(mark, self.args.process_index)
        if loss is None or not hasattr(self, "_tr_loss"):
            return
        self._total_loss_scalar, pending = loss
        self._tr_loss.fill_(pending)
        last_logged = (mark or {})["loss"].get("last_logged_step", self.state.global_step)
        self._globalstep_last_logged = min(int(last_logged), self.state.global_step)
        self._whole_run_loss = True

    def _loss_state(self) -> dict[str, Any]:
        """The loss accumulators now; the not-yet-logged part is per process (gathered: a collective)."""
        pending = getattr(self, "_tr_loss", None)
        t = torch.zeros(1, device=self.args.device) if pending is None else pending.detach().reshape(1)
        if self.accelerator.num_processes > 1:
            t = self.accelerator.gather(t)
        return {
            "total": getattr(self, "_total_loss_scalar", 0.0),
            "pending": [float(x) for x in t.tolist()],
            "last_logged_step": getattr(self, "_globalstep_last_logged", self.state.global_step),
            "step": self.state.global_step,
        }

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = Path(self._get_output_dir(trial))  # type: ignore[attr-defined]
        target = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and target.exists():  # an unfinished (or superseded) save of this step
            shutil.rmtree(target)
        self.accelerator.wait_for_everyone()
        loss = self._loss_state()
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotation comes after the mark
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        except Exception as err:  # a full disk: one line naming the file being written (no mark: incomplete)
            failure = write_failure(err, being_written(target))
            if failure is None:
                raise
            raise failure from None
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process wrote its files (RNG state per process)
        if self.args.should_save:
            honour_umask_tree(target)  # safetensors' temporary file leaves the weights 0600
            mark_complete(target, loss, step=self.state.global_step, train_seconds=self._seconds_so_far())
            rotate(run_dir, limit, self.state.best_model_checkpoint, self.args.world_size, target)
        self.accelerator.wait_for_everyone()

    def _seconds_so_far(self) -> float | None:
        """The run's training seconds up to now, across resumes (None when an earlier part is unknown)."""
        if self._seconds_before is None or self._train_started is None:
            return None
        return float(self._seconds_before) + time.time() - self._train_started

    def _finalize_training(self, trial: Any, num_train_samples: int, start_time: float) -> TrainOutput:
        # HF deletes the final checkpoint under --save_total_limit 1 when the best one is older; it is
        # kept (beside the best, as rotation does), so a rerun of the finished run sees its last step
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        self._finalizing = True
        try:
            out = super()._finalize_training(trial, num_train_samples, start_time)  # type: ignore[misc]
        finally:
            self.args.save_total_limit = limit
            self._finalizing = False
        if self._partial_from is not None:
            self.loss_note = (
                f"train_loss covers steps {self._partial_from + 1}..{self.state.global_step} only "
                f"(resumed from a checkpoint without {MARK})"
            )
            logger.warning("%s", self.loss_note)
            out.metrics["train_loss_note"] = self.loss_note
        if not self._whole_run_loss:
            return out
        # ``log`` gave HF's final metrics (the dict returned here) the whole run's train_loss
        return TrainOutput(out.global_step, out.metrics["train_loss"], out.metrics)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """On a resumed run HF's final metrics divide the whole run's loss sum (restored) by this call's steps;
        they get the whole run's mean here, in place, so the console, TensorBoard, ``log_history`` and the
        metrics ``_finalize_training`` returns all carry it."""
        if getattr(self, "_finalizing", False) and self._whole_run_loss and "train_loss" in logs:
            logs["train_loss"] = self._total_loss_scalar / max(self.state.global_step, 0.001)
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def planned_steps(self) -> int:
        """The optimizer steps this run trains in all (``--max_steps``, or epochs x steps per epoch)."""
        if self.args.max_steps > 0:
            return int(self.args.max_steps)
        loader = self.get_train_dataloader()  # type: ignore[attr-defined]
        return int(self.set_initial_training_values(self.args, loader)[-1])  # type: ignore[attr-defined]

    def finish_from(self, ckpt: str | Path) -> TrainOutput:
        """The run already reached its last step at ``ckpt`` (killed before its export): load the weights and
        state instead of training (HF would train a step more), with the whole run's training loss, time and
        throughput (recorded in the mark at the save), and ``finished_from_checkpoint`` naming ``ckpt``."""
        self._load_from_checkpoint(str(ckpt))  # type: ignore[attr-defined]
        self.state = TrainerState.load_from_json(str(Path(ckpt) / TRAINER_STATE_FILE))
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best and Path(best).is_dir():
            self._load_from_checkpoint(best)  # type: ignore[attr-defined]  # as HF ends such a run
        mark = read_mark(ckpt)
        self._run_seconds = (mark or {}).get("train_seconds")
        total, pending = run_loss(mark, self.args.process_index) or (math.nan, 0.0)
        loss = (total + pending) / max(self.state.global_step, 0.001)
        metrics = self._run_speed((mark or {}).get("train_seconds"), ckpt)
        metrics.update(total_flos=self.state.total_flos, train_loss=loss, epoch=self.state.epoch)
        logger.info("%s is the run's last step: finishing from it, no training", ckpt)
        return TrainOutput(self.state.global_step, loss, metrics)

    def _run_speed(self, seconds: float | None, ckpt: str | Path) -> dict[str, Any]:
        """HF's train speed metrics for the run that saved ``ckpt`` in ``seconds`` (its samples: HF's count
        for the steps done); without a recorded time (an earlier longify's mark), a note instead of a speed."""
        done = {"finished_from_checkpoint": str(ckpt)}
        if not seconds:
            note = f"finished from {ckpt}, whose {MARK} has no training time (saved by an earlier longify)"
            return {**done, "train_note": note}
        loader = self.get_train_dataloader()  # type: ignore[attr-defined]
        samples = self.set_initial_training_values(self.args, loader)[3]  # type: ignore[attr-defined]
        steps = self.state.global_step
        return {
            "train_runtime": round(seconds, 4),
            "train_samples_per_second": round(samples * steps / max(self.state.max_steps, 1) / seconds, 3),
            "train_steps_per_second": round(steps / seconds, 3),
            **done,
        }
