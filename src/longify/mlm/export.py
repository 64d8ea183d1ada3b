"""Clean model directories from trained models and Trainer checkpoints.

A clean directory holds config, safetensors weights, tokenizer, model card and metrics; no optimizer,
scheduler, RNG or trainer state (the seed's helper that deleted ``optimizer.pt`` / ``scheduler.pt``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from longify.errors import LongifyError, first_line
from longify.outdir import atomic_output_dir, files_into
from longify.runinfo import write_json_atomic

logger = logging.getLogger(__name__)

_PROJECTIONS = ("query", "key", "value")
_EXTRA_FILES = ("pretrain_metrics.json", "conversion.json")


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


def _card(name: str, info: dict[str, Any]) -> str:
    lines = [
        "---",
        "library_name: transformers",
        "tags: [longformer, longify, fill-mask]",
        "---",
        f"# {name}",
        "",
        "A Longformer after long masked-LM pretraining with longify.",
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
) -> None:
    """Save ``model`` (+ tokenizer, card, metrics) into the existing directory ``target``."""
    model.save_pretrained(target, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(target)
    (target / "README.md").write_text(_card(target.name, card), encoding="utf-8")
    if metrics is not None:
        write_json_atomic(target / "metrics.json", metrics)


def export_into(
    output_dir: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, **kw: Any
) -> None:
    """Write a clean model into ``output_dir`` beside its checkpoints (``config.json`` lands last)."""
    with files_into(output_dir) as tmp:
        write_clean_model(model, tokenizer, tmp, **kw)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, copy_global: bool = True, overwrite: bool = False
) -> Path:
    """``longify export``: a clean, loadable model directory from a Trainer checkpoint."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise LongifyError(f"{checkpoint}: not a model checkpoint (no config.json)")
    try:
        model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    except (OSError, ValueError) as err:
        raise LongifyError(f"{checkpoint}: cannot load the model: {first_line(err)}") from None
    tok_dir = checkpoint if (checkpoint / "tokenizer_config.json").is_file() else checkpoint.parent
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError):
        logger.warning("no tokenizer found in %s or its parent; exporting the model only", checkpoint)
        tokenizer = None
    layers = copy_global_projections(model) if copy_global else 0
    with atomic_output_dir(out, overwrite) as tmp:
        write_clean_model(
            model,
            tokenizer,
            tmp,
            card={"exported from": str(checkpoint), "global projections copied from local": bool(layers)},
        )
        for name in _EXTRA_FILES:
            for where in (checkpoint, checkpoint.parent):
                if (where / name).is_file():
                    shutil.copyfile(where / name, tmp / name)
                    break
    logger.info("exported %s -> %s", checkpoint, out)
    return Path(out)
