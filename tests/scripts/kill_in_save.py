"""Run `longify pretrain` or `longify qa train` ARGS and SIGKILL the process at a chosen moment (tests only).

usage: python kill_in_save.py pretrain|qa WHEN STEP ARGS...

WHEN is ``in-save``: inside the save of ``checkpoint-STEP``, after the model weights were written but before
the optimizer, scheduler, RNG and trainer state (a crash half-way through a checkpoint); or ``after-save``:
right after ``checkpoint-STEP`` is complete (the last checkpoint, before the final evaluation and export).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from transformers import Trainer, TrainerCallback


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_in_save(step: int) -> None:
    """Patch the Trainer so that saving the optimizer of ``checkpoint-STEP`` kills the process instead."""
    original = Trainer._save_optimizer_and_scheduler

    def save(self: Trainer, output_dir: str) -> None:
        if self.state.global_step == step:
            _kill()
        original(self, output_dir)

    Trainer._save_optimizer_and_scheduler = save  # type: ignore[method-assign]


class KillAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            _kill()


def main(argv: list[str]) -> None:
    command, when, step, rest = argv[0], argv[1], int(argv[2]), argv[3:]
    callbacks: list[TrainerCallback] = []
    if when == "in-save":
        kill_in_save(step)
    elif when == "after-save":
        callbacks.append(KillAfterSave(step))
    else:
        raise SystemExit(f"unknown WHEN {when!r}")
    if command == "pretrain":
        from longify.mlm.args import parse_pretrain_args
        from longify.mlm.train import pretrain

        pretrain(parse_pretrain_args(rest), callbacks=callbacks)
    else:
        import transformers.trainer as hf_trainer

        from longify.qa.args import parse_qa_args
        from longify.qa.train import train_qa

        # train_qa takes no callbacks: add ours to every Trainer's defaults
        hf_trainer.DEFAULT_CALLBACKS = [*hf_trainer.DEFAULT_CALLBACKS, *callbacks]
        train_qa(parse_qa_args(rest))


if __name__ == "__main__":
    main(sys.argv[1:])
