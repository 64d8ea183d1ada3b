"""One parser path for the HF-style commands (``pretrain``, ``qa train``, ``qa evaluate``).

A command line (or a YAML/JSON config file given first, flags after it overriding it) goes through the
legacy-flag translation, gets longify's defaults for what the Trainer should do on this machine, and is
parsed by ``HfArgumentParser`` into the command's dataclasses plus ``TrainingArguments``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.training_args import ParallelMode

from longify.cpu import EMULATED_BF16, FORCE_FLAG, cpu_info, emulated_bf16_refusal
from longify.distributed import release_at_exit
from longify.errors import LongifyError, first_line
from longify.legacy import BOOL_WORDS, TRUE_WORDS, Translated, config_to_argv, translate_legacy_args
from longify.seeds import check_seed
from longify.strictload import DuplicateKeys, load_json, load_yaml

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)


def read_config(path: Path) -> dict[str, Any]:
    """A YAML/JSON config file: flag name -> value."""
    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml(text) if path.suffix in (".yaml", ".yml") else load_json(text)
    except DuplicateKeys as err:  # the plain loaders keep the last value silently
        raise LongifyError("\n".join(f"{path}: {p}" for p in err.problems)) from None
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise LongifyError(f"{path}: cannot read the config file: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise LongifyError(f"{path}: expected a mapping of flag names to values")
    return {key: _expand(path, key, value) for key, value in data.items()}


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _expand(path: Path, key: str, value: Any) -> Any:
    """``${VAR}`` / ``$VAR`` in string values come from the environment; an unset one is an error."""
    if isinstance(value, list):
        return [_expand(path, key, v) for v in value]
    if not isinstance(value, str):
        return value
    for match in _VAR.finditer(value):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise LongifyError(f"{path}: field {key} uses ${name}, which is not set in the environment")
    return os.path.expandvars(value)


def has_flag(argv: Sequence[str], flag: str) -> bool:
    return any(a.split("=")[0] == flag for a in argv)


def launched_processes() -> int:
    """Processes the launcher (torchrun) started for this run: 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def flag_is_true(argv: Sequence[str], flag: str) -> bool:
    """Whether the last ``flag`` in ``argv`` sets a boolean field: ``--flag``, ``--flag true``, ``--flag=1``."""
    value: str | None = None
    for i, arg in enumerate(argv):
        name, eq, inline = arg.partition("=")
        if name != flag:
            continue
        following = argv[i + 1] if i + 1 < len(argv) else None
        value = inline if eq else following if following and following.lower() in BOOL_WORDS else "true"
    return value is not None and value.lower() in TRUE_WORDS


def machine_defaults(argv: Sequence[str]) -> list[str]:
    """Flags longify adds unless given: TensorBoard logging; on CPU no pinned memory, and ``--use_cpu true``
    under torchrun (with ``--ddp_backend gloo``: accelerate makes CPU processes data-parallel only with
    ``cpu=True``; without it each process trains its own model on its share of the data) and with ``--bf16``
    (transformers refuses bf16 without a GPU unless ``use_cpu``; with it, training runs under CPU bf16
    autocast); under torchrun ``--ddp_find_unused_parameters false``: every trainable parameter of longify's
    models gets a gradient at every step (MLM freezes the global q/k/v it never uses; QA always has global
    tokens), so DDP's search for unused ones is wasted work, and a warning on every rank."""
    extra: list[str] = []
    cuda = torch.cuda.is_available()
    if not has_flag(argv, "--report_to"):
        extra += ["--report_to", "tensorboard"]
    if not cuda and not has_flag(argv, "--dataloader_pin_memory"):
        extra += ["--dataloader_pin_memory", "false"]
    several, bf16 = launched_processes() > 1, flag_is_true(argv, "--bf16")
    if not cuda and (several or bf16) and not has_flag(argv, "--use_cpu"):
        extra += ["--use_cpu", "true"]
    if not cuda and bf16:
        logger.info("--bf16: no CUDA device here; training and evaluation run under CPU bf16 autocast")
    if not cuda and several and not has_flag(argv, "--ddp_backend"):
        extra += ["--ddp_backend", "gloo"]
    if several and not has_flag(argv, "--ddp_find_unused_parameters"):
        extra += ["--ddp_find_unused_parameters", "false"]
    return extra


def precision(t: TrainingArguments) -> str:
    """The arithmetic a run uses, for its records: ``bf16-autocast`` (``--bf16``, CPU or GPU),
    ``fp16-autocast`` (``--fp16`` on CUDA; without CUDA the flag is dropped, see ``legacy``) or ``fp32``."""
    return "bf16-autocast" if t.bf16 else "fp16-autocast" if t.fp16 else "fp32"


def data_parallel_size(t: TrainingArguments) -> int:
    """Processes that share one model: the size of the process group the Trainer uses (DDP), else 1."""
    if t.parallel_mode != ParallelMode.DISTRIBUTED or not torch.distributed.is_initialized():
        return 1
    return torch.distributed.get_world_size()


def check_data_parallel(t: TrainingArguments) -> None:
    """Under torchrun, refuse a setup where the processes would not share one model (each training alone
    on its share of the data, rank 0's model exported)."""
    launched = launched_processes()
    if launched == 1:
        return
    release_at_exit()
    if data_parallel_size(t) != launched:
        raise LongifyError(
            f"torchrun started {launched} processes but the Trainer is not data-parallel on "
            f"{t.distributed_state.distributed_type if t.distributed_state else 'this machine'} "
            "(check --use_cpu / --ddp_backend)"
        )


def split_config(argv: Sequence[str]) -> tuple[str | None, dict[str, Any], list[str]]:
    """A command line's leading YAML/JSON config (its path and keys; None and {} without one) and the flags
    after it, which override it."""
    items = list(argv)
    if items and items[0].endswith((".yaml", ".yml", ".json")) and not items[0].startswith("-"):
        return items[0], read_config(Path(items[0])), items[1:]
    return None, {}, items


def expanded_argv(argv: Sequence[str]) -> list[str]:
    """The command line as ``parse_hf_args`` reads it: a leading config's keys as flags, then the flags."""
    _, config, flags = split_config(argv)
    return config_to_argv(config) + flags


def parse_hf_args(
    argv: Sequence[str],
    parser: HfArgumentParser,
    defaults: Sequence[str] = (),
    refused: Mapping[str, str] | None = None,
) -> tuple[tuple[Any, ...], Translated]:
    """Parse ``argv`` into ``parser``'s dataclasses; ``defaults`` are flags added when absent; ``refused``:
    legacy flags this command has no use for (see ``translate_legacy_args``). The TrainingArguments values
    are checked (``check_training_args``)."""
    config_file, config, flags = split_config(argv)
    translated = translate_legacy_args(
        config_to_argv(config) + flags, cuda_available=torch.cuda.is_available(), refused=refused
    )
    final = list(translated.argv)
    check_full_eval(final)
    check_cpu_bf16(final)
    final += machine_defaults(final)
    for i in range(0, len(defaults), 2):
        if not has_flag(final, defaults[i]):
            final += list(defaults[i : i + 2])
    parser.error = _one_line_error  # type: ignore[method-assign]  # not 120 lines of usage, then exit
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=final, return_remaining_strings=True)
    except ValueError as err:
        raise LongifyError(first_line(err)) from None
    if rest:
        keys = [flag[2:] for flag in rest if flag[2:] in config and not has_flag(flags, flag)]
        if keys:
            raise LongifyError(
                f"{config_file}: unknown key(s) {', '.join(keys)} (not a flag of this command)"
            )
        raise LongifyError(f"unknown flag(s): {' '.join(rest)}")
    for item in parsed:
        if isinstance(item, TrainingArguments):
            check_training_args(item)
            check_data_parallel(item)
            # --logging_dir (no TrainingArguments field in transformers 5) travels with this run's
            # arguments, never through os.environ, where it would outlive the run (see route_tensorboard)
            setattr(item, LOGGING_DIR_ATTR, translated.extras.get("logging_dir"))
    return tuple(parsed), translated


LOGGING_DIR_ATTR = "longify_logging_dir"


def tensorboard_dir(t: TrainingArguments) -> str:
    """Where this run's TensorBoard events go: ``--logging_dir``, else ``OUTPUT_DIR/runs/<date>_<host>``
    (transformers' default place, inside the output folder), whatever ``TENSORBOARD_LOGGING_DIR`` says."""
    from transformers.integrations.integration_utils import default_logdir

    given = getattr(t, LOGGING_DIR_ATTR, None)
    return os.path.expanduser(given) if given else os.path.join(t.output_dir, default_logdir())


def route_tensorboard(trainer: Trainer) -> None:
    """Point the Trainer's TensorBoard callback (if any) at ``tensorboard_dir``; call before training.
    The callback otherwise takes ``$TENSORBOARD_LOGGING_DIR`` as it stood when it was made, which a
    previous run in the same process (the demo: pretraining, then QA) may have set."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = tensorboard_dir(trainer.args)


def check_full_eval(argv: Sequence[str]) -> None:
    """``--bf16_full_eval`` / ``--fp16_full_eval``: refused in one line. The Trainer would cast the model itself
    for its own evaluation loop (and leave it cast), which longify's evaluations do not run; without a GPU,
    transformers' own refusal would ask for ``--use_cpu``, which would not make the flag work either."""
    for flag in ("--bf16_full_eval", "--fp16_full_eval"):
        if flag_is_true(argv, flag):
            raise LongifyError(
                f"{flag}: longify does not cast the model for evaluation; evaluation runs in the training's "
                "precision (--bf16: under bf16 autocast); remove it"
            )


def check_cpu_bf16(argv: Sequence[str]) -> None:
    """``--bf16`` on a CPU without native bf16 (AVX2 only): refused in one line unless ``--bf16_on_emulated_cpu``
    is given too. There PyTorch's fallback GEMM makes bf16 several times slower than fp32 (``longify.cpu``),
    so a run would take many times longer for nothing. A run on CUDA (without ``--use_cpu``) is not checked."""
    if not flag_is_true(argv, "--bf16"):
        return
    if torch.cuda.is_available() and not flag_is_true(argv, "--use_cpu"):
        return
    info = cpu_info()
    if info.native_bf16:
        return
    if not flag_is_true(argv, FORCE_FLAG):
        raise LongifyError(emulated_bf16_refusal(info))
    logger.warning(
        "%s: bf16 on a CPU without native bf16 (%s): %s", FORCE_FLAG, info.capability, EMULATED_BF16
    )


def check_training_args(t: TrainingArguments) -> None:
    """Values TrainingArguments accepts but that make no run: one line naming the flag."""
    positive = {
        "--per_device_train_batch_size": t.per_device_train_batch_size,
        "--per_device_eval_batch_size": t.per_device_eval_batch_size,
        "--gradient_accumulation_steps": t.gradient_accumulation_steps,
    }
    for flag, value in positive.items():
        if value <= 0:
            raise LongifyError(f"{flag}: expected a positive integer, got {value}")
    check_seed("--seed", t.seed)
    if not t.learning_rate > 0:
        raise LongifyError(f"--learning_rate: expected a positive number, got {t.learning_rate}")
    if t.do_train and t.max_steps == 0:
        raise LongifyError(
            "--max_steps: expected a positive number of steps (or -1 to train --num_train_epochs), got 0"
        )
    if t.do_train and t.max_steps < 0 and not t.num_train_epochs > 0:
        raise LongifyError(f"--num_train_epochs: expected a positive number, got {t.num_train_epochs}")


def _one_line_error(message: str) -> NoReturn:
    """argparse's error hook for the HF-style parsers: a bad flag value is a one-line LongifyError."""
    raise LongifyError(message)
