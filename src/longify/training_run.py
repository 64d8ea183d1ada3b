"""Training runs: the one recipe that every training command (``pretrain``, ``qa train``) runs through, and
the policy of its run folder (``--output_dir``): which checkpoint a run resumes from (the newest complete one,
or ``--resume_from_checkpoint`` checked), whether the run is already finished, and what
``--overwrite_output_dir`` clears.

The recipe (``run_training``) owns the crash-safety sequence; a command (a ``TrainingCommand``) supplies its
flags, inputs, model, data and metrics:

1. lock ``--output_dir`` and check the command's flags;
2. find the checkpoint to resume from; refuse to continue a run made with other defining arguments;
3. a finished run's rerun returns its results and changes nothing;
4. check every input (data files, tokenizer, windows, sizes) before anything is written or long work starts;
5. load the model and data (``pretrain`` converts a short source here, after step 4) and make the Trainer;
6. under ``--overwrite_output_dir``, remove the earlier run's outputs (only now: a bad input deletes nothing);
7. record the run (``longify_run.json``, with the arguments that define it);
8. train, or finish from a checkpoint at the last step (killed before its export);
9. evaluate, save the model (rank 0), write the results.

Killed anywhere, the same command again gives the result of an uninterrupted run.

Layer 4 of the import layers (see ``[tool.importlinter]`` in pyproject.toml): below the crash-safe Trainer
checkpoints and the stages, above the output folders; the Trainer is the one the command makes, used through
``RunTrainer`` (``longify.checkpoints.CrashSafeCheckpoints`` provides it)."""

from __future__ import annotations

import json
import logging
import resource
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from longify.artifacts import (
    MODEL_METRICS_FILE,
    NULL_ODDS_FILE,
    PRETRAIN_METRICS_FILE,
    QA_EVAL_FILES,
    RUN_FILE,
    TRAINER_STATE_FILE,
)
from longify.checkpoint_files import (
    MARK,
    checkpoint_step,
    checkpoints_in,
    damage_reason,
    incomplete_reason,
    newest_complete,
    note_unhashed,
    read_mark,
)
from longify.cpu import cpu_info
from longify.errors import LongifyError
from longify.fileio import check_writable, write_json_atomic
from longify.locks import output_lock
from longify.runargs import KEY, check_same_run, relocated

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
    RUN_FILE,
    PRETRAIN_METRICS_FILE,
    *QA_EVAL_FILES,
    NULL_ODDS_FILE,
    MODEL_METRICS_FILE,
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
        state = json.loads((Path(ckpt) / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    step = int(state.get("global_step", 0))
    if max_steps > 0:
        return step >= max_steps
    planned = state.get("max_steps")
    return state.get("num_train_epochs") == num_train_epochs and planned is not None and step >= planned


# ------------------------------------------------------------------------------------------------ the recipe

# the points of a run at which the recipe calls ``TrainingCommand.reached`` (a kill right after any of them
# resumes to the uninterrupted result: tests/integration/test_training_recipe.py)
STEPS = (
    "locked",
    "inputs checked",
    "ready",
    "cleared",
    "recorded",
    "trained",
    "evaluated",
    "saved",
    "finished",
)


class RunTrainer(Protocol):
    """What the recipe needs of the command's Trainer (a ``CrashSafeCheckpoints`` HF Trainer)."""

    def is_world_process_zero(self) -> bool: ...

    def planned_steps(self) -> int: ...

    def finish_from(self, ckpt: str | Path) -> Any: ...

    def train(self, resume_from_checkpoint: str | None = None) -> Any: ...

    def run_seconds(self) -> float | None: ...

    @property
    def state(self) -> Any: ...  # HF's TrainerState: global_step, num_input_tokens_seen


class TrainingCommand(ABC):
    """One training command, as the recipe runs it: its flags, inputs, model, data and metrics.

    ``training`` is its HF ``TrainingArguments``; ``overwrite`` its ``--overwrite_output_dir``. Each method is
    called once, in the order of ``run_training``; state found by one (a config, a tokenizer) is kept on the
    instance for the next."""

    name: ClassVar[str]  # "pretrain", "qa train": the command, for log lines
    also_cleared: ClassVar[tuple[str, ...]] = ()  # its own files that --overwrite_output_dir removes too

    def __init__(self, training: Any, overwrite: bool) -> None:
        self.training = training
        self.overwrite = overwrite
        self.output_dir = Path(training.output_dir)

    @property
    def trains(self) -> bool:
        return bool(self.training.do_train)

    def reached(self, step: str) -> None:
        """The recipe got past ``step`` (one of ``STEPS``)."""
        logger.debug("%s: %s", self.name, step)

    def check_flags(self) -> None:  # noqa: B027 (a hook: most commands have nothing to add)
        """Flags that make no run at all, refused before the run folder is looked at."""

    @abstractmethod
    def defining(self) -> dict[str, Any]:
        """The arguments that define the run (``{"--flag": value}``): a resumed or finished run must match."""

    @abstractmethod
    def finished(self, resume: str) -> dict[str, Any] | None:
        """The results of this very run when it already ended at ``resume`` (its last step), else None."""

    @abstractmethod
    def check_inputs(self) -> None:
        """Every input (data files, tokenizer, windows, sizes), each refused in one line; nothing written."""

    @abstractmethod
    def prepare(self, resume: str | None) -> RunTrainer:
        """Load (or make) the model and the data, and return the Trainer that trains them."""

    @property
    @abstractmethod
    def source(self) -> str | None:
        """The model the run starts from (after ``prepare``): its files stay when it is ``--output_dir``."""

    @abstractmethod
    def run_record(self) -> dict[str, Any]:
        """What ``longify_run.json`` says of the run (the recipe adds the defining arguments)."""

    def before_training(self, trainer: RunTrainer) -> None:  # noqa: B027 (a hook)
        """Called once the run is recorded, before the first step (pretrain: the untrained model's metrics)."""

    @abstractmethod
    def evaluate(self, trainer: RunTrainer) -> dict[str, Any]:
        """The final evaluation (on every process), ``{}`` when the run evaluates nothing."""

    @abstractmethod
    def save(self, trainer: RunTrainer, final: dict[str, Any]) -> None:
        """Save the trained model into ``--output_dir`` (rank 0 of a training run only)."""

    @abstractmethod
    def results(
        self, trainer: RunTrainer, trained: Any, final: dict[str, Any], cost: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Write the run's results (rank 0) and return them; ``trained``: the ``TrainOutput`` or None;
        ``cost``: what the training cost (``training_cost``), None when the run trained nothing."""


def run_training(command: TrainingCommand) -> dict[str, Any]:
    """Run ``command`` through the recipe (see the module's docstring); return its results."""
    with output_lock(command.output_dir):
        command.reached("locked")
        command.check_flags()
        targs = command.training
        resume = resume_checkpoint(
            command.output_dir,
            requested=targs.resume_from_checkpoint,
            overwrite=command.overwrite,
            world_size=targs.world_size,
        )
        defining = command.defining()
        if command.trains and resume is not None:
            check_same_run(command.output_dir, defining)  # never continue a run made with other arguments
        if command.trains and resume and training_done(resume, targs.max_steps, targs.num_train_epochs):
            done = command.finished(resume)
            if done is not None:  # a rerun of a finished run changes nothing
                logger.info(
                    "%s: finished at step %s already: nothing to do (pass --overwrite_output_dir to train again)",
                    command.output_dir,
                    checkpoint_step(resume),
                )
                return relocated(
                    done, done.get("output_dir"), command.output_dir
                )  # a copied folder names itself
        command.check_inputs()
        command.reached("inputs checked")
        if targs.include_num_input_tokens_seen in ("no", False):
            targs.include_num_input_tokens_seen = "non_padding"  # HF counts the real tokens trained on (cost)
        trainer = command.prepare(resume)
        command.reached("ready")
        main = trainer.is_world_process_zero()
        if command.overwrite and main:  # every input has loaded: now the old run goes
            clear_previous_run(command.output_dir, *command.also_cleared, source=command.source)
        command.reached("cleared")
        if command.trains and main:
            write_json_atomic(command.output_dir / RUN_FILE, {**command.run_record(), KEY: defining})
        command.reached("recorded")
        command.before_training(trainer)
        trained = cost = None
        if command.trains:
            if resume and (checkpoint_step(resume) or 0) >= trainer.planned_steps():
                trained = trainer.finish_from(resume)  # killed before its export: no step more
            else:
                trained = trainer.train(resume_from_checkpoint=resume)
            cost = training_cost(trainer)
        command.reached("trained")
        final = command.evaluate(trainer)
        command.reached("evaluated")
        if command.trains and main:
            command.save(trainer, final)
        command.reached("saved")
        results = command.results(trainer, trained, final, cost)
        command.reached("finished")
        return results


def training_cost(trainer: RunTrainer) -> dict[str, Any]:
    """What the whole run's training cost (across resumes), for accuracy per hour beside its scores:
    ``train_seconds`` (wall clock of the training loop, its evaluations and saves included), ``steps``,
    ``seconds_per_step``, ``train_tokens`` (real, non-padding tokens, all processes: HF's
    ``num_input_tokens_seen``), ``train_tokens_per_second``, ``peak_memory_mb`` and what it measures
    (``memory``: CUDA's peak allocation on this process's GPU, or the process's peak resident set on CPU), and
    ``device`` (the GPU's name, or ``cpu-`` and the CPU's capability). Unknown values are null."""
    seconds = trainer.run_seconds()
    seconds = (
        round(seconds, 3) if seconds else None
    )  # the per-step and per-token figures follow the recorded one
    steps = int(trainer.state.global_step)
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0) or None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        memory, peak = "cuda max allocated", torch.cuda.max_memory_allocated() / 2**20
        device = torch.cuda.get_device_name()
    else:
        memory, peak = (
            "cpu max rss",
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )  # KiB on Linux
        device = f"cpu-{cpu_info().capability}"
    return {
        "train_seconds": seconds,
        "steps": steps,
        "seconds_per_step": round(seconds / steps, 4) if seconds and steps else None,
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / seconds, 1) if tokens and seconds else None,
        "peak_memory_mb": round(peak, 1),
        "memory": memory,
        "device": device,
    }
