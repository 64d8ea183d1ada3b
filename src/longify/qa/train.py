"""``longify qa train``: fine-tune a span head (run_squad.py flags), with the full n-best decoding and the
official EM/F1 every ``--eval_steps`` (``--eval_strategy steps``) and at the end, logged to TensorBoard.

The fine-tuned model and tokenizer are saved to ``--output_dir`` (standard checkpoint: loads with
``AutoModelForQuestionAnswering`` / ``AutoTokenizer``), beside predictions.json, nbest_predictions.json
and results.json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, set_seed

from longify.checkpoint_files import checkpoint_step
from longify.checkpoints import CrashSafeCheckpoints
from longify.console import quiet_trainer
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.hfargs import route_tensorboard
from longify.loading import check_vocab
from longify.locks import locks_output
from longify.outdir import files_into
from longify.qa.args import QAArgs, QADataArguments
from longify.qa.features import build_features, collator_for, uses_global_attention
from longify.qa.models import (
    check_model_type,
    effective_max_seq_length,
    load_config,
    load_qa_model,
    load_tokenizer,
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
from longify.runargs import KEY, RUN_FILE, check_same_run, defining_args, relocated
from longify.training_run import clear_previous_run, resume_checkpoint, training_done

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


def _finished_results(args: QAArgs, resume: str | None) -> dict[str, Any] | None:
    """results.json of this very run when it already finished (last step checkpointed, model saved, scored)."""
    t = args.training
    if not (t.do_train and training_done(resume, t.max_steps, t.num_train_epochs)):
        return None
    try:
        results = json.loads((Path(t.output_dir) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    trained = (results.get("train") or {}).get("global_step") == checkpoint_step(resume)
    return results if trained and ("average" in results or not t.do_eval) else None


@locks_output(lambda args: args.training.output_dir)
def train_qa(args: QAArgs) -> dict[str, Any]:
    """Fine-tune (``--do_train``) and/or evaluate (``--do_eval``); returns the results.json record."""
    t, data = args.training, args.data
    name = args.model.model_name_or_path
    if name is None:
        raise LongifyError("--model_name_or_path: required")
    if not (t.do_train or t.do_eval):
        raise LongifyError("--do_train / --do_eval: nothing to do, give at least one")
    config = load_config(name)
    check_model_type(args.model_type, config, name)
    out = Path(t.output_dir)
    resume = resume_checkpoint(
        out,
        requested=t.resume_from_checkpoint,
        overwrite=args.overwrite_output_dir,
        world_size=t.world_size,
    )
    set_seed(t.seed)
    tokenizer = load_tokenizer(args.model.tokenizer_name or name)
    check_vocab(tokenizer, args.model.tokenizer_name or name, config, name, pairs=True)
    seq_len = effective_max_seq_length(data.max_seq_length, config, tokenizer)
    defining = defining_args(
        [dataclasses.asdict(args.model), {**dataclasses.asdict(args.data), "max_seq_length": seq_len}],
        t,
        do_lower_case=args.do_lower_case,
        model_type=args.model_type,
    )  # the window used, not the one asked for: what a refused rerun names, what qa evaluate takes
    if t.do_train and resume is not None:
        check_same_run(out, defining)  # never continue a run made with other arguments
    done = _finished_results(args, resume)
    if done is not None:  # a rerun of a finished run changes nothing
        logger.info(
            "%s: finished at step %s already: nothing to do (pass --overwrite_output_dir to train again)",
            out,
            done["train"]["global_step"],
        )
        return relocated(done, done.get("output_dir"), out)  # a copied folder names itself
    train_examples = load_split(data, data.train_file, train=True, flag="--train_file") if t.do_train else []
    evaluating = t.do_eval or t.eval_strategy != "no"
    eval_examples = (
        load_split(data, data.predict_file, train=False, flag="--predict_file") if evaluating else []
    )
    note_ignored_flags(data)
    lower = resolve_lowercase(args.do_lower_case, tokenizer)
    model = load_qa_model(name, args.model.attention)
    train_features = build_features(
        train_examples,
        tokenizer,
        max_seq_length=seq_len,
        doc_stride=data.doc_stride,
        max_query_length=data.max_query_length,
        global_attention=uses_global_attention(config),
        train=True,
        lower=lower,
    )
    if t.do_train:
        logger.info(
            "%d training questions -> %d windows of up to %d tokens",
            len(train_examples),
            len(train_features),
            seq_len,
        )
    trainer = QATrainer(
        model=model,
        args=t,
        train_dataset=train_features or None,
        eval_dataset=eval_examples or None,
        data_collator=collator_for(tokenizer, config),
        processing_class=tokenizer,
        eval_examples=eval_examples,
        data_args=data,
        max_seq_length=seq_len,
        lower=lower,
        autocast_dtype=autocast_for(args),
    )
    route_tensorboard(trainer)  # events into this run's folder, never an earlier run's --logging_dir
    if args.overwrite_output_dir and trainer.is_world_process_zero():
        clear_previous_run(out, source=name)  # every input has loaded: now the old run's outputs go
    if t.do_train and trainer.is_world_process_zero():
        write_json_atomic(out / RUN_FILE, {**run_record(args), KEY: defining})
    record: dict[str, Any] = {"model": name, "output_dir": str(out), "train": None}
    if t.do_train:
        if resume and (checkpoint_step(resume) or 0) >= trainer.planned_steps():
            result = trainer.finish_from(resume)  # killed before its export: no step more
        else:
            result = trainer.train(resume_from_checkpoint=resume)
        record["train"] = {
            "global_step": result.global_step,
            "training_loss": result.training_loss,
            **result.metrics,
        }
        if trainer.is_world_process_zero():  # under DDP one process writes (save_model has no barrier)
            save_model_atomic(trainer, out)
        record["model_dir"] = str(out)
    record.update(run_record(args))
    if not t.do_eval:
        if trainer.is_world_process_zero():
            write_json_atomic(out / "results.json", record)
        return record
    trainer.evaluate()
    assert trainer.last_output is not None
    if not trainer.is_world_process_zero():
        return record
    return write_outputs(out, trainer.last_output, {"predict_file": data.predict_file, **record})
