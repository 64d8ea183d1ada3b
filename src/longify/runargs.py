"""The arguments that define a run, recorded in its ``--output_dir``, so that resuming or rerunning it with
other ones is refused instead of silently continuing (or declaring finished) the run made with the old ones.

Defining: the model and data arguments (not caches, worker counts, the TensorBoard name or the attention
kernel, which computes the same thing) and the TrainingArguments that change the trained model. Not
defining: output, logging, evaluation and save cadence, and ``--max_steps`` / ``--num_train_epochs``, whose
increase legitimately extends a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longify.artifacts import RUN_FILE
from longify.errors import LongifyError

KEY = "defining_args"

TRAINING = (
    "learning_rate",
    "seed",
    "data_seed",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "optim",
    "optim_args",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "label_smoothing_factor",
    "fp16",
    "bf16",
    "tf32",
    "gradient_checkpointing",
    "group_by_length",
    "dataloader_drop_last",
    "full_determinism",
    "average_tokens_across_devices",
)
# caches, worker counts, names, kernels and the permission to run bf16 on an emulating CPU (bf16_on_emulated_cpu)
# change how a run goes, not what it computes
_NOT_DEFINING = {
    "data_cache_dir",
    "preprocessing_num_workers",
    "model_name",
    "attention",
    "bucket_width",
    "bf16_on_emulated_cpu",
}


def _normal(value: Any) -> Any:
    """JSON form; a path (or comma-separated paths) that exists is made absolute, so ``./x`` equals ``x``."""
    if isinstance(value, str) and value:
        parts = value.split(",")
        if all(Path(p).expanduser().exists() for p in parts):
            return ",".join(str(Path(p).expanduser().resolve()) for p in parts)
    return json.loads(json.dumps(value, default=str))


def defining_args(sections: list[dict[str, Any]], training: Any, **more: Any) -> dict[str, Any]:
    """``{"--flag": value}`` of the model/data dataclasses (as dicts), the defining TrainingArguments of
    ``training``, and the keyword arguments ``more`` (other top-level flags)."""
    out: dict[str, Any] = {}
    for section in sections:
        out.update({f"--{k}": _normal(v) for k, v in section.items() if k not in _NOT_DEFINING})
    values = training.to_dict()
    out.update({f"--{k}": _normal(values[k]) for k in TRAINING if k in values})
    out.update({f"--{k}": _normal(v) for k, v in more.items()})
    return out


def _text(value: Any) -> str:
    return (
        "(not given)"
        if value is None
        else ",".join(map(str, value))
        if isinstance(value, list)
        else str(value)
    )


def check_same_run(output_dir: str | Path, current: dict[str, Any], record_file: str = RUN_FILE) -> None:
    """Refuse, in one line, to continue (or call finished) the run recorded in ``output_dir`` when any of its
    defining arguments differs from ``current``; a folder without a record (or an older one) passes.
    ``record_file``: the JSON file holding them under ``defining_args`` (``qa evaluate``: results.json)."""
    try:
        record = json.loads((Path(output_dir) / record_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    earlier = record.get(KEY) if isinstance(record, dict) else None
    if not isinstance(earlier, dict):
        return
    changed = [
        f"{flag} {_text(current.get(flag))} (the run was made with {_text(earlier.get(flag))})"
        for flag in sorted(set(current) & set(earlier))  # flags of one longify version
        if current.get(flag) != earlier.get(flag)
    ]
    if changed:
        raise LongifyError(
            f"{output_dir}: holds a run made with other arguments: {'; '.join(changed)}; give another "
            "--output_dir, or --overwrite_output_dir to start afresh"
        )


def relocated(record: Any, recorded: str | Path | None, current: str | Path) -> Any:
    """``record`` (a finished run's JSON) with every path in or at the run folder it recorded, ``recorded``,
    naming the same place in ``current``: a run folder copied elsewhere and run again (nothing to do)
    reports its own folder, never the one it was copied from."""
    if recorded is None or Path(recorded) == Path(current):
        return record
    old, new = str(recorded).rstrip("/"), str(current).rstrip("/")
    if isinstance(record, dict):
        return {k: relocated(v, recorded, current) for k, v in record.items()}
    if isinstance(record, list):
        return [relocated(v, recorded, current) for v in record]
    if isinstance(record, str) and (record == old or record.startswith(old + "/")):
        return new + record[len(old) :]
    return record
