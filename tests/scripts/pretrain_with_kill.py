"""Run `longify pretrain` ARGS and SIGKILL the process right after training step N (tests only).

usage: python pretrain_with_kill.py N ARGS...
"""

from __future__ import annotations

import os
import signal
import sys

from transformers import TrainerCallback

from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    pretrain(parse_pretrain_args(sys.argv[2:]), callbacks=[KillAtStep(int(sys.argv[1]))])
