"""Clean model directories from trained models and Trainer checkpoints.

A clean directory holds config, safetensors weights, tokenizer, model card and metrics; no optimizer,
scheduler, RNG or trainer state (the seed's helper that deleted ``optimizer.pt`` / ``scheduler.pt``).
A model keeps its head (masked-LM or question answering); a checkpoint's export carries the evaluations
up to its step, never the run's final ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.artifacts import (
    CONVERSION_FILE,
    MODEL_METRICS_FILE,
    PRETRAIN_METRICS_FILE,
    RESULTS_FILE,
    TRAINER_STATE_FILE,
    read_pretrain_metrics,
    write_pretrain_metrics,
)
from longify.checkpoint_files import checkpoint_step, damage_reason, incomplete_reason, read_mark
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.loading import LOAD_ERRORS, check_tokenizer, load_failure
from longify.locks import output_lock
from longify.outdir import atomic_output_dir, check_output_dir, files_into
from longify.targets import TARGET_NAMES, Target, model_target, target_of

logger = logging.getLogger(__name__)

_PROJECTIONS = ("query", "key", "value")
_TASKS = {"ForMaskedLM": "fill-mask", "ForQuestionAnswering": "question-answering"}  # architecture suffix
_RUN_METRICS = (PRETRAIN_METRICS_FILE, RESULTS_FILE)  # a run folder's own metrics (pretrain, qa train)


@torch.no_grad()
def copy_global_projections(model: PreTrainedModel) -> int:
    """Copy each layer's local q/k/v into its global q/k/v (allenai's ``copy_proj_layers``); return layers done."""
    done = 0
    for module in model.modules():
        if all(hasattr(module, f"{n}_global") for n in _PROJECTIONS):
            for n in _PROJECTIONS:
                getattr(module, f"{n}_global").load_state_dict(getattr(module, n).state_dict())
            done += 1
    return done


_SUMMARIES = {
    "fill-mask": "{what} after long masked-LM pretraining with longify.",
    "question-answering": "{what} fine-tuned for extractive question answering with longify.",
    "converted": "{what} converted from a short encoder with longify convert, not yet pretrained on long "
    "text (its new positions are copies of the short model's).",
    "other": "{what} masked-LM model, exported with longify.",
}


def model_kind(config: Any) -> tuple[str, str]:
    """What a model card calls a model of ``config``'s target (``Target.describe``), and its tag: the
    config's model type (a full conversion: its own class's)."""
    return target_of(config).describe(config), str(config.model_type)


def _card(
    name: str,
    info: dict[str, Any],
    kind: tuple[str, str],
    task: str = "fill-mask",
    summary: str | None = None,
) -> str:
    what = _SUMMARIES[summary or task].format(what=kind[0])
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [{kind[1]}, longify, {task}]",
        "---",
        f"# {name}",
        "",
        what,
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def write_clean_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    target: Path,
    *,
    card: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    task: str = "fill-mask",
    name: str | None = None,
    summary: str | None = None,
) -> None:
    """Save ``model`` (+ tokenizer, card, metrics) into the existing directory ``target`` (a temporary
    folder, renamed or moved later: ``name`` is the card's title, the folder the model ends up in)."""
    model.save_pretrained(target, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(target)
    kind = model_kind(model.config)
    (target / "README.md").write_text(_card(name or target.name, card, kind, task, summary), encoding="utf-8")
    if metrics is not None:
        write_json_atomic(target / MODEL_METRICS_FILE, metrics)


def export_into(
    output_dir: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, **kw: Any
) -> None:
    """Write a clean model into ``output_dir`` beside its checkpoints (``config.json`` lands last)."""
    with files_into(output_dir) as tmp:
        write_clean_model(model, tokenizer, tmp, name=Path(os.path.abspath(output_dir)).name, **kw)


def model_task(folder: Path) -> str:
    """``fill-mask`` or ``question-answering``, from the architecture in ``config.json``; anything else
    is refused (exporting it as a masked-LM model would drop its head and add a random one)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{folder / 'config.json'}: cannot read it ({err})") from None
    archs = config.get("architectures") or [] if isinstance(config, dict) else []
    for arch in archs:
        for suffix, task in _TASKS.items():
            if str(arch).endswith(suffix):
                return task
    raise LongifyError(
        f"{folder}: a {', '.join(map(str, archs)) or 'model of no stated architecture'}; export takes a "
        "masked-LM model (longify convert / pretrain) or a question-answering model (longify qa train)"
    )


def check_long(folder: Path, model: PreTrainedModel) -> Target:
    """The long target of the model in ``folder`` (``longify.targets.model_target``); a short model is refused:
    its card would call a short encoder a long one (a plain short model is converted with ``longify
    convert`` or pretrained with ``longify pretrain``, which converts it)."""
    target = model_target(folder, model.config)
    if target is None:
        model_type = getattr(model.config, "model_type", None)
        raise LongifyError(
            f"{folder}: a {model_type or 'model of no stated type'} model, not a long one; export takes a "
            f"longify pretrain or qa train run, or a checkpoint of a long model ({', '.join(TARGET_NAMES)}; "
            "convert a short model with longify convert)"
        )
    return target


def checkpoint_metrics(folder: Path, step: int) -> dict[str, Any]:
    """The evaluations logged up to ``step`` in the checkpoint's own ``trainer_state.json``."""
    state = json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    evals = [
        e
        for e in state.get("log_history", [])
        if any(k.startswith("eval_") for k in e) and e.get("step", 0) <= step
    ]
    return {"step": step, "evals": evals}


def pretrain_metrics_at(run_file: Path, step: int) -> dict[str, Any]:
    """``pretrain_metrics.json`` as it stood at ``step``: the initial evaluation and those up to ``step``;
    the run's final evaluation and totals (measured later) are left out."""
    data = read_pretrain_metrics(run_file)
    later = ("final", "steps", "seconds", "finished", "train_loss")
    out = {k: v for k, v in data.items() if k not in later}
    out["evals"] = [e for e in data.get("evals", []) if e.get("step", 0) <= step]
    out["checkpoint_step"] = step
    return out


def _origin(checkpoint: Path, step: int | None, task: str) -> str | None:
    """What the model card says the model is: a pretrain run or checkpoint, a ``longify convert`` output
    (not pretrained), or a long masked-LM model of unknown origin; None keeps the task's own summary."""
    if task != "fill-mask" or step is not None or (checkpoint / PRETRAIN_METRICS_FILE).is_file():
        return None
    return "converted" if (checkpoint / CONVERSION_FILE).is_file() else "other"


def _extras(checkpoint: Path, step: int | None, target: Path) -> None:
    """conversion.json, and the metrics that belong to what is exported: a run's own files, or for a
    checkpoint the evaluations up to its step (never the run's final ones)."""
    if (checkpoint / CONVERSION_FILE).is_file():
        shutil.copyfile(checkpoint / CONVERSION_FILE, target / CONVERSION_FILE)
    elif step is not None and (checkpoint.parent / CONVERSION_FILE).is_file():
        shutil.copyfile(checkpoint.parent / CONVERSION_FILE, target / CONVERSION_FILE)
    if step is None:
        for name in _RUN_METRICS:
            if (checkpoint / name).is_file():
                shutil.copyfile(checkpoint / name, target / name)
        return
    write_json_atomic(target / MODEL_METRICS_FILE, checkpoint_metrics(checkpoint, step))
    if (run_file := checkpoint.parent / PRETRAIN_METRICS_FILE).is_file():
        write_pretrain_metrics(target / PRETRAIN_METRICS_FILE, pretrain_metrics_at(run_file, step))


def check_saved_content(checkpoint: Path) -> None:
    """A checkpoint with a completion mark is exported only as it was saved: a file missing, of another size
    or with other bytes (sha256) is one line naming it. Run folders and plain HF checkpoints have no mark."""
    if read_mark(checkpoint) is None:
        return
    if why := incomplete_reason(checkpoint, need_state=False) or damage_reason(checkpoint):
        raise LongifyError(f"{checkpoint}: damaged checkpoint, {why}; export another checkpoint-N folder")


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, copy_global: bool = True, overwrite: bool = False
) -> Path:
    """``longify export``: a clean, loadable model directory from a Trainer checkpoint or a run folder.

    A long model of any target (``longify.targets``), as its own class: it keeps its head, a masked-LM model
    exported as one (a Longformer's global q/k/v copied from the local ones unless ``copy_global`` is off:
    pretraining never trains them), a question-answering model (``qa train``) with its QA head (and a
    Longformer's trained global q/k/v) as it is; short and other models are refused.
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise LongifyError(f"{checkpoint}: not a model checkpoint (no config.json)")
    check_saved_content(checkpoint)
    task = model_task(checkpoint)
    with output_lock(out):
        check_output_dir(out, overwrite)
        auto = AutoModelForQuestionAnswering if task == "question-answering" else AutoModelForMaskedLM
        try:
            model = auto.from_pretrained(checkpoint)
        except LOAD_ERRORS as err:
            raise load_failure(str(checkpoint), err, "the model") from None
        target = check_long(checkpoint, model)  # after loading: a corrupt file is named first
        step = checkpoint_step(checkpoint)
        tok_dir = (
            checkpoint
            if (checkpoint / "tokenizer_config.json").is_file() or step is None
            else checkpoint.parent
        )
        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            check_tokenizer(tokenizer, str(tok_dir), "")
        except (OSError, ValueError, LongifyError):  # none, or the empty one transformers makes for none
            logger.warning("no tokenizer found in %s; exporting the model only", tok_dir)
            tokenizer = None
        card: dict[str, Any] = {"exported from": str(checkpoint)}
        if step is not None:
            card["step"] = step
        if target.global_projections:  # Longformer's: pretraining never trains them
            layers = copy_global_projections(model) if copy_global and task == "fill-mask" else 0
            card["global projections copied from local"] = bool(layers)
        with atomic_output_dir(out, overwrite) as tmp:
            write_clean_model(
                model,
                tokenizer,
                tmp,
                card=card,
                task=task,
                name=Path(os.path.abspath(out)).name,
                summary=_origin(checkpoint, step, task),
            )
            _extras(checkpoint, step, tmp)
    logger.info("exported %s (%s) -> %s", checkpoint, task, out)
    return Path(out)
