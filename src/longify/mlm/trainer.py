"""The Trainer of long masked-LM pretraining: deterministic named metrics, a metrics JSON, NaN guard."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from longify.artifacts import PRETRAIN_METRICS_FILE, read_pretrain_metrics, write_pretrain_metrics
from longify.checkpoint_files import newest_complete
from longify.checkpoints import CrashSafeCheckpoints
from longify.console import quiet_trainer
from longify.errors import LongifyError
from longify.mlm.metrics import MLMSums, masked_nats, mlm_metrics

logger = logging.getLogger(__name__)


class MetricsLog:
    """``pretrain_metrics.json``: the initial evaluation, every later one, and the run's facts.

    On resume, entries after the resumed step are dropped (they will be measured again), so a resumed run
    ends with the same history as an uninterrupted one.
    """

    def __init__(self, output_dir: str | Path, facts: dict[str, Any], resume_step: int | None = None) -> None:
        self.path = Path(output_dir) / PRETRAIN_METRICS_FILE
        self.data: dict[str, Any] = {"initial": None, "evals": [], "final": None, **facts}
        if resume_step is not None and self.path.is_file():
            old = read_pretrain_metrics(self.path)
            self.data["initial"] = old.get("initial")
            self.data["evals"] = [e for e in old.get("evals", []) if e["step"] <= resume_step]

    def record(self, step: int, metrics: dict[str, float]) -> None:
        entry = {"step": step, **metrics}
        if self.data["initial"] is None and step == 0:
            self.data["initial"] = entry
        else:
            self.data["evals"] = [e for e in self.data["evals"] if e["step"] != step] + [entry]

    def write(self, **extra: Any) -> None:
        self.data.update(extra)
        write_pretrain_metrics(self.path, self.data)

    def finished_at(self, step: int, evaluated: bool) -> dict[str, Any] | None:
        """The record written when a run ended at ``step`` (with its final evaluation when ``evaluated``),
        or None when the file holds no such finished run."""
        try:
            old = read_pretrain_metrics(self.path)
        except LongifyError:  # none, or not one that a run wrote
            return None
        done = old.get("finished") and old.get("steps") == step and (old.get("final") or not evaluated)
        return old if done else None


def really_missing(model: torch.nn.Module, missing: Sequence[str]) -> list[str]:
    """The keys of ``missing`` (a checkpoint's load into ``model``) whose weights the load did not set.

    A tied parameter is saved once, under its source: in transformers 5 ``lm_head.decoder.weight`` is the word
    embedding matrix and ``lm_head.decoder.bias`` is ``lm_head.bias`` (``model.all_tied_weights_keys``), so a
    checkpoint has neither decoder key, and loading the source sets them. Such a key is excused only while
    it still is the very same tensor as its source and the source was loaded."""
    tied: dict[str, str] = getattr(model, "all_tied_weights_keys", None) or {}
    params = dict(model.named_parameters(remove_duplicate=False))
    absent = set(missing)

    def loaded_through_source(key: str) -> bool:
        source = tied.get(key)
        return (
            source is not None
            and source not in absent
            and key in params
            and source in params
            and params[key] is params[source]
        )

    return [key for key in missing if not loaded_through_source(key)]


class LongMLMTrainer(CrashSafeCheckpoints, Trainer):
    """HF Trainer with longify's evaluation (loss, perplexity, bits per token / character), a NaN guard and
    a training loss weighted by masked tokens across accumulation steps and processes (``compute_loss``)."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the masked tokens of the whole optimizer step

    def __init__(
        self,
        *args: Any,
        text_stats: dict[str, int] | None = None,
        metrics_log: MetricsLog | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.text_stats = text_stats or {}
        self.metrics_log = metrics_log
        self.model_accepts_loss_kwargs = True  # the Trainer counts num_items_in_batch for compute_loss
        quiet_trainer(self)  # `longify -q`: no progress bar, no printed log dicts

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        dataloader = self.get_eval_dataloader(eval_dataset)
        model = self.model
        was_training = model.training
        model.eval()
        sums = MLMSums()
        for batch in dataloader:
            batch = self._prepare_inputs(batch)
            labels = batch.pop("labels")
            # the training's precision from the first evaluation on (accelerate's autocast wraps the model's
            # forward only once training has prepared it; the Trainer's own context is a no-op in transformers 5)
            with torch.inference_mode():
                with self.accelerator.autocast():
                    logits = model(**batch).logits
                nats, counts = masked_nats(logits, labels)
            nats, counts = self.accelerator.gather_for_metrics((nats, counts))
            sums.add(float(nats.sum()), int(counts.sum()))
        model.train(was_training)
        named = mlm_metrics(sums, self.text_stats.get("n_tokens"), self.text_stats.get("n_chars"))
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in named.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        if self.metrics_log is not None and self.is_world_process_zero():
            self.metrics_log.record(self.state.global_step, named)
            self.metrics_log.write()
        return metrics

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """Cross-entropy summed over this micro-batch's masked tokens, divided by the masked tokens of the
        whole optimizer step (every accumulation step of every process: ``num_items_in_batch``) and
        multiplied by the processes, which DDP's gradient average divides out again: the loss and gradient
        of one process with the same global batch, however it is split. (Longformer's own loss is a
        per-micro-batch mean that ignores ``num_items_in_batch``, which the Trainer then multiplies by the
        world size and does not divide by the accumulation steps.)"""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        nats, counts = masked_nats(outputs.logits, labels)
        if num_items_in_batch is None:  # no count from the Trainer: this micro-batch's mean
            loss = (
                nats.sum()
                / counts.sum().clamp(min=1)
                / getattr(self, "current_gradient_accumulation_steps", 1)
            )
        else:
            loss = nats.sum() / num_items_in_batch
            if self.args.average_tokens_across_devices:  # num_items_in_batch counts every process's tokens
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not math.isfinite(float(loss)):
            self._stop(f"training loss is {float(loss)} at step {self.state.global_step + 1}")
        return loss

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """HF's warning about a resumed checkpoint's missing keys, without the tied decoder keys that every
        masked-LM checkpoint leaves out by design (``really_missing``); a key really missing is still named."""
        missing = really_missing(self.model, load_result.missing_keys)
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # an update can make the weights NaN before any loss shows it: never save such a checkpoint
        bad = next((n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            self._stop(f"parameter {bad} is not finite after step {self.state.global_step}")
        super()._save_checkpoint(model, trial)

    def _stop(self, what: str) -> None:
        last = newest_complete(self.args.output_dir, self.args.world_size, quiet=True)
        raise LongifyError(
            f"{what}; stopped. Last good checkpoint: {last or 'none yet'} (lower --learning_rate, or resume from it)"
        )
