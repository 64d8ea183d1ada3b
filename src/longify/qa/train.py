"""``longify qa train``: fine-tune a span head (run_squad.py flags), with the full n-best decoding and the
official EM/F1 every ``--eval_steps`` (``--eval_strategy steps``) and at the end, logged to TensorBoard.

The fine-tuned model and tokenizer are saved to ``--output_dir`` (standard checkpoint: loads with
``AutoModelForQuestionAnswering`` / ``AutoTokenizer``), beside predictions.json, nbest_predictions.json
and results.json.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, set_seed

from longify.artifacts import RESULTS_FILE, read_qa_results, write_qa_results
from longify.checkpoint_files import checkpoint_step
from longify.checkpoints import CrashSafeCheckpoints
from longify.console import quiet_trainer
from longify.errors import LongifyError
from longify.hfargs import route_tensorboard
from longify.loading import check_vocab, load_tokenizer
from longify.outdir import files_into
from longify.qa.args import QAArgs, QADataArguments
from longify.qa.features import build_features, collator_for, uses_global_attention
from longify.qa.models import (
    check_model_type,
    effective_max_seq_length,
    load_config,
    load_qa_model,
)
from longify.qa.pipeline import (
    EvalOutput,
    autocast_for,
    flat_metrics,
    load_split,
    note_ignored_flags,
    resolve_lowercase,
    run_evaluation,
    run_record,
    write_outputs,
)
from longify.qa.tasks.example import QAExample
from longify.runargs import defining_args
from longify.targets import model_target
from longify.training_run import TrainingCommand, run_training

logger = logging.getLogger(__name__)


class QATrainer(CrashSafeCheckpoints, Trainer):
    """A Trainer whose ``evaluate`` decodes answers over all windows and scores them with the official
    metric (the seed's "continuous F1 and EM evaluation during training")."""

    def __init__(
        self,
        *args: Any,
        eval_examples: Sequence[QAExample] = (),
        data_args: QADataArguments | None = None,
        max_seq_length: int | None = None,
        lower: bool = False,
        autocast_dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.eval_examples = list(eval_examples)
        self.data_args = data_args or QADataArguments()
        self.max_seq_length = max_seq_length
        self.lower = lower
        self.autocast_dtype = autocast_dtype
        self.last_output: EvalOutput | None = None
        quiet_trainer(self)  # `longify -q`: no progress bar, no printed log dicts

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """HF's span loss ((start + end) / 2 of the batch-mean cross-entropy), but over real tokens only:
        positions with ``attention_mask == 0`` (the collator pads each micro-batch to its longest window)
        get the dtype's lowest logit, so the loss does not depend on how windows are batched together."""
        inputs = dict(inputs)
        starts, ends = inputs.pop("start_positions"), inputs.pop("end_positions")
        outputs = model(**inputs)
        loss = span_loss(outputs.start_logits, outputs.end_logits, starts, ends, inputs.get("attention_mask"))
        return (loss, outputs) if return_outputs else loss

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if not self.eval_examples:
            raise LongifyError("--predict_file: evaluation needs evaluation questions")
        start = time.perf_counter()
        output = run_evaluation(
            self.model,
            self.processing_class,
            self.eval_examples,
            self.data_args,
            batch_size=self.args.per_device_eval_batch_size,
            lower=self.lower,
            max_seq_length=self.max_seq_length,
            autocast_dtype=self.autocast_dtype,
        )
        metrics = flat_metrics(output.result, metric_key_prefix)
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 3)
        self.log(dict(metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self.last_output = output
        logger.info("step %d: EM %.2f F1 %.2f", self.state.global_step, *list(metrics.values())[:2])
        return metrics


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Mean start and end cross-entropy with padded positions masked out (positions past the window are
    ignored, as in HF's heads)."""
    length = start_logits.size(1)
    losses = []
    for logits, target in ((start_logits, starts), (end_logits, ends)):
        if attention_mask is not None:
            logits = logits.masked_fill(attention_mask[:, :length] == 0, torch.finfo(logits.dtype).min)
        target = target.reshape(-1).clamp(0, length)
        losses.append(torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=length))
    return (losses[0] + losses[1]) / 2


def save_model_atomic(trainer: Trainer, output_dir: Path) -> None:
    """Save model + tokenizer beside the checkpoints, ``config.json`` last (see ``files_into``)."""
    with files_into(output_dir) as tmp:
        trainer.save_model(str(tmp))


class TrainQA(TrainingCommand):
    """``longify qa train`` as the training-run recipe runs it (``longify.training_run``)."""

    name = "qa train"

    def __init__(self, args: QAArgs) -> None:
        super().__init__(args.training, args.overwrite_output_dir)
        self.args = args

    def check_flags(self) -> None:
        args, t = self.args, self.training
        name = args.model.model_name_or_path
        if name is None:
            raise LongifyError("--model_name_or_path: required")
        if not (t.do_train or t.do_eval):
            raise LongifyError("--do_train / --do_eval: nothing to do, give at least one")
        self.model_name: str = name
        self.config = load_config(name)
        check_model_type(args.model_type, self.config, name)

    def defining(self) -> dict[str, Any]:
        """The window used, not the one asked for: what a refused rerun names, what qa evaluate takes."""
        args, name = self.args, self.model_name
        set_seed(self.training.seed)  # before anything random: the span head starts from this seed
        self.tokenizer = load_tokenizer(args.model.tokenizer_name or name)
        check_vocab(self.tokenizer, args.model.tokenizer_name or name, self.config, name, pairs=True)
        self.seq_len = effective_max_seq_length(args.data.max_seq_length, self.config, self.tokenizer)
        return defining_args(
            [
                dataclasses.asdict(args.model),
                {**dataclasses.asdict(args.data), "max_seq_length": self.seq_len},
            ],
            self.training,
            do_lower_case=args.do_lower_case,
            model_type=args.model_type,
        )

    def finished(self, resume: str) -> dict[str, Any] | None:
        try:
            results = read_qa_results(self.output_dir / RESULTS_FILE)
        except LongifyError:
            return None
        trained = (results.get("train") or {}).get("global_step") == checkpoint_step(resume)
        return results if trained and ("average" in results or not self.training.do_eval) else None

    def check_inputs(self) -> None:
        """The questions (read and checked whole), and the flags they make moot."""
        t, data = self.training, self.args.data
        self.train_examples = (
            load_split(data, data.train_file, train=True, flag="--train_file") if t.do_train else []
        )
        evaluating = t.do_eval or t.eval_strategy != "no"
        self.eval_examples = (
            load_split(data, data.predict_file, train=False, flag="--predict_file") if evaluating else []
        )
        note_ignored_flags(data)
        self.lower = resolve_lowercase(self.args.do_lower_case, self.tokenizer)

    def prepare(self, resume: str | None) -> QATrainer:
        args, t, data = self.args, self.training, self.args.data
        model = load_qa_model(self.model_name, args.model.attention)
        train_features = build_features(
            self.train_examples,
            self.tokenizer,
            max_seq_length=self.seq_len,
            doc_stride=data.doc_stride,
            max_query_length=data.max_query_length,
            global_attention=uses_global_attention(self.config),
            train=True,
            lower=self.lower,
        )
        if t.do_train:
            logger.info(
                "%d training questions -> %d windows of up to %d tokens",
                len(self.train_examples),
                len(train_features),
                self.seq_len,
            )
        trainer = QATrainer(
            model=model,
            args=t,
            train_dataset=train_features or None,
            eval_dataset=self.eval_examples or None,
            data_collator=collator_for(self.tokenizer, self.config),
            processing_class=self.tokenizer,
            eval_examples=self.eval_examples,
            data_args=data,
            max_seq_length=self.seq_len,
            lower=self.lower,
            autocast_dtype=autocast_for(args),
        )
        route_tensorboard(trainer)  # events into this run's folder, never an earlier run's --logging_dir
        return trainer

    @property
    def source(self) -> str | None:
        return self.model_name

    def run_record(self) -> dict[str, Any]:
        """The run's arguments and versions, and the long target of the model trained (None: a short one),
        which says what the saved QA model is (``longify.targets.model_target``)."""
        return {**run_record(self.args), "target": self.target_name}

    @property
    def target_name(self) -> str | None:
        target = model_target(self.model_name, self.config)
        return target.name if target is not None else None

    def evaluate(self, trainer: QATrainer) -> dict[str, Any]:  # type: ignore[override]
        return trainer.evaluate() if self.training.do_eval else {}

    def save(self, trainer: QATrainer, final: dict[str, Any]) -> None:  # type: ignore[override]
        save_model_atomic(trainer, self.output_dir)  # under DDP one process writes (no barrier in save_model)

    def results(  # type: ignore[override]
        self, trainer: QATrainer, trained: Any, final: dict[str, Any], cost: dict[str, Any] | None
    ) -> dict[str, Any]:
        out = self.output_dir
        record: dict[str, Any] = {"model": self.model_name, "output_dir": str(out), "train": None}
        if trained is not None:
            record["train"] = {
                "global_step": trained.global_step,
                "training_loss": trained.training_loss,
                **trained.metrics,
            }
            record["model_dir"] = str(out)
            record["cost"] = (
                cost  # the whole run's training: seconds per step, tokens per second, peak memory
            )
        record.update(run_record(self.args))
        if trained is not None:
            record["target"] = self.target_name  # what the saved model is (longify.targets.model_target)
        if not trainer.is_world_process_zero():
            return record
        if not self.training.do_eval:
            write_qa_results(out / RESULTS_FILE, record)
            return record
        assert trainer.last_output is not None
        predict_file = self.args.data.predict_file
        return write_outputs(out, trainer.last_output, {"predict_file": predict_file, **record})


def train_qa(args: QAArgs) -> dict[str, Any]:
    """Fine-tune (``--do_train``) and/or evaluate (``--do_eval``) through the training-run recipe; returns the
    results.json record."""
    return run_training(TrainQA(args))
