"""Run longify commands (alone or under torchrun) and record what each rank saw (tests only).

usage: python ddp_run.py RECORD_DIR COMMAND ARGS... [:: COMMAND ARGS...]
COMMAND is ``pretrain``, ``qa-train`` or ``qa-evaluate``. Each rank writes RECORD_DIR/rank{R}.json with a
parameter checksum after every optimizer step, the Trainer's log history, and how many QA windows this
rank ran through the model in evaluation.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

import longify.qa.evaluate as qa_evaluate
import longify.qa.pipeline as qa_pipeline
import longify.qa.train as qa_train
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.args import parse_qa_args

RANK = int(os.environ.get("RANK", "0"))
RECORD: dict[str, Any] = {"checksums": [], "logs": [], "eval_windows": []}


class Recorder(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            total = sum(float(p.double().sum()) for p in model.parameters())
            absolute = sum(float(p.double().abs().sum()) for p in model.parameters())
        RECORD["checksums"].append([state.global_step, total, absolute])

    def on_log(self, args, state, control, logs=None, **kwargs):
        RECORD["logs"].append({"step": state.global_step, **(logs or {})})


class RecordingQATrainer(qa_train.QATrainer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(Recorder())


def counted_window_logits(model, features, *args, **kwargs):
    RECORD["eval_windows"].append(len(features))
    return _window_logits(model, features, *args, **kwargs)


_window_logits = qa_pipeline.window_logits
qa_pipeline.window_logits = counted_window_logits
qa_train.QATrainer = RecordingQATrainer


def run(command: str, argv: list[str]) -> None:
    if command == "pretrain":
        pretrain(parse_pretrain_args(argv), callbacks=[Recorder()])
    elif command == "qa-train":
        qa_train.train_qa(parse_qa_args(argv))
    elif command == "qa-evaluate":
        qa_evaluate.evaluate_qa(parse_qa_args(argv))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    record_dir = Path(sys.argv[1])
    commands: list[list[str]] = [[]]
    for item in sys.argv[2:]:
        if item == "::":
            commands.append([])
        else:
            commands[-1].append(item)
    for command, *argv in commands:
        run(command, argv)
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{RANK}.json").write_text(json.dumps(RECORD), encoding="utf-8")
