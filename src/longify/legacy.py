"""Flags that older transformers scripts accepted and transformers 5 dropped, translated to today's meaning.

The seed's command lines (``run_long_lm.py``, ``run_squad.py``) must run with only the script name
replaced. Each dropped flag is rewritten to its current equivalent (or recorded for longify to act on)
with one log line saying so; none is silently ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longify.errors import LongifyError

logger = logging.getLogger(__name__)


@dataclass
class Translated:
    """The rewritten argv plus what longify must do for flags with no TrainingArguments field."""

    argv: list[str]
    extras: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


TRUE_WORDS = {"true", "1", "yes", "y", "t"}
BOOL_WORDS = TRUE_WORDS | {"false", "0", "no", "n", "f"}

# flag -> (takes a value?, rewrite(value, extras) -> (new argv items, log note))
Rewrite = Callable[[str | None, dict[str, Any]], tuple[list[str], str]]


def _rename(new: str) -> Rewrite:
    def rewrite(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
        return [new, str(value)], f"means {new} {value}"

    return rewrite


def _eval_during_training(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
    return ["--eval_strategy", "steps"], "means --eval_strategy steps (evaluate every --eval_steps)"


def _overwrite(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
    extras["overwrite_output_dir"] = True
    return [], "means: start from scratch, removing checkpoints in --output_dir (no automatic resume)"


def _logging_dir(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
    extras["logging_dir"] = value
    return [], f"means TensorBoard event files go to {value} (TENSORBOARD_LOGGING_DIR)"


def _lower(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
    extras["do_lower_case"] = True
    return [], "means lower-casing the text, applied only when the tokenizer is uncased"


def _model_type(value: str | None, extras: dict[str, Any]) -> tuple[list[str], str]:
    extras["model_type"] = value
    return [], f"is read from the model's config.json; {value!r} is checked against it"


LEGACY_FLAGS: dict[str, tuple[bool, Rewrite]] = {
    "--evaluate_during_training": (False, _eval_during_training),
    "--per_gpu_train_batch_size": (True, _rename("--per_device_train_batch_size")),
    "--per_gpu_eval_batch_size": (True, _rename("--per_device_eval_batch_size")),
    "--overwrite_output_dir": (False, _overwrite),
    "--logging_dir": (True, _logging_dir),
    "--do_lower_case": (False, _lower),
    "--model_type": (True, _model_type),
}


def _bf16_hint() -> str:
    """What ``--fp16`` without CUDA suggests: ``--bf16`` only where this CPU runs bf16 natively."""
    from longify.cpu import cpu_info  # lazily: this module is imported where torch is not (study planning)

    info = cpu_info()
    if info.native_bf16:
        return "--bf16 runs bf16 autocast on the CPU"
    return f"this CPU, {info.capability}, has no native bf16: fp32 is its fastest precision"


def translate_legacy_args(
    argv: Sequence[str], *, cuda_available: bool, refused: Mapping[str, str] | None = None
) -> Translated:
    """Rewrite dropped flags in ``argv`` (``--flag value`` and ``--flag=value`` forms), logging each once.

    ``refused`` maps legacy flags the command has no use for to the reason: they are an error, not a log
    line promising an action that never happens."""
    out = Translated(argv=[])
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        name, eq, inline = arg.partition("=")
        if name == "--fp16" and not cuda_available:
            value = (
                inline
                if eq
                else (items[i + 1] if i + 1 < len(items) and items[i + 1].lower() in BOOL_WORDS else None)
            )
            i += 2 if value is not None and not eq else 1
            if (value or "true").lower() in TRUE_WORDS:
                out.notes.append(f"--fp16: no CUDA device here; running in fp32 ({_bf16_hint()})")
            continue
        if name not in LEGACY_FLAGS:
            out.argv.append(arg)
            i += 1
            continue
        if refused and name in refused:
            raise LongifyError(f"{name}: {refused[name]}; remove it")
        takes_value, rewrite = LEGACY_FLAGS[name]
        value: str | None = None
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(items):
                value = items[i + 1]
                i += 1
        new, note = rewrite(value, out.extras)
        out.argv.extend(new)
        out.notes.append(f"{name} (dropped in transformers 5) {note}")
        i += 1
    for note in out.notes:
        logger.info("%s", note)
    return out


def config_to_argv(config: dict[str, Any]) -> list[str]:
    """A YAML/JSON config (flag name -> value) as command-line items, so both go through one parser."""
    argv: list[str] = []
    for key, value in config.items():
        flag = f"--{key}"
        if value is True:
            argv.append(flag)
        elif value is None or (value is False and flag in LEGACY_FLAGS):
            continue
        elif value is False:
            argv += [flag, "false"]
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
