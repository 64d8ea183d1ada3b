"""The flags of the commands a spec's flag blocks become, so that an unknown key is refused when the spec
is planned (one line naming its path), not when its job runs after the jobs it depends on.

A block accepts exactly what its command's parser accepts: the option strings of its ``HfArgumentParser``
(dataclass fields, their aliases and ``--no_X`` forms) plus the dropped flags ``longify.legacy`` translates,
less those the command refuses. Each value is checked with the type its flag has in that parser (as the
runner renders it: ``job_argv``), and a seed against numpy's range. Building a parser imports transformers
(and torch): done once, on demand.
"""

from __future__ import annotations

from argparse import Action, ArgumentTypeError
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from longify.legacy import BOOL_WORDS, TRUE_WORDS
from longify.seeds import EXPECTED, seed_ok

# stage -> the command its block becomes
COMMANDS = {"pretrain": "longify pretrain", "train": "longify qa train", "evaluate": "longify qa evaluate"}


@dataclass(frozen=True)
class ValueType:
    """What a flag takes, as the study runner renders a spec value (``--key value``, a list as several
    values, a bool as ``--key true|false``, or for a switch as the bare flag or nothing; null as nothing)
    and the command's parser converts it."""

    convert: Callable[[str], Any] | None  # one value -> its parsed form; None: a switch that takes no value
    expected: str
    many: bool = False  # takes a list (nargs + / *)
    choices: tuple[str, ...] = ()


def to_bool(text: str) -> bool:
    """transformers' ``string_to_bool`` (the type of its bool fields), without importing transformers."""
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in BOOL_WORDS:
        return False
    raise ValueError(text)


INT = ValueType(int, "an integer")
FLOAT = ValueType(float, "a number")
STR = ValueType(str, "a string")
STRS = ValueType(str, "a string", many=True)
BOOL = ValueType(to_bool, "true or false")
BOOL_VALUE = ValueType(to_bool, "true or false")  # a ``bool | None`` field (needs a value)
SWITCH = ValueType(None, "true or false")


def choice(*values: str) -> ValueType:
    return ValueType(str, f"one of {', '.join(values)}", choices=values)


# The types of common flags of each command (a subset of what its parser accepts, which a test checks, as
# it checks that each type is the one the parser gives), so that a spec using only these plans without
# importing transformers; any other key is decided by the parser itself.
LEGACY_TYPES = {"evaluate_during_training": SWITCH, "per_gpu_train_batch_size": INT,
                "per_gpu_eval_batch_size": INT, "logging_dir": STR, "model_type": STR,
                "do_lower_case": SWITCH}  # fmt: skip
_TRAINING = {"seed": INT, "learning_rate": FLOAT, "weight_decay": FLOAT, "adam_epsilon": FLOAT,
             "warmup_steps": FLOAT, "max_steps": INT, "num_train_epochs": FLOAT, "logging_steps": FLOAT,
             "eval_steps": FLOAT, "save_steps": FLOAT, "eval_strategy": choice("no", "steps", "epoch"),
             "save_strategy": choice("no", "steps", "epoch", "best"), "save_total_limit": INT,
             "max_grad_norm": FLOAT, "per_device_train_batch_size": INT, "per_device_eval_batch_size": INT,
             "gradient_accumulation_steps": INT, "fp16": BOOL, "bf16": BOOL, "disable_tqdm": BOOL_VALUE,
             "report_to": STR, "evaluate_during_training": SWITCH, "per_gpu_train_batch_size": INT,
             "per_gpu_eval_batch_size": INT, "logging_dir": STR, "bf16_on_emulated_cpu": BOOL}  # fmt: skip
_QA = {"model_type": STR, "do_lower_case": SWITCH, "tokenizer_name": STR, "attention": STR, "train_file": STR,
       "predict_file": STR, "languages": STRS, "max_seq_length": INT, "doc_stride": INT,
       "max_query_length": INT, "n_best_size": INT, "max_answer_length": INT, "concat_contexts": INT,
       "concat_seed": INT, "max_train_samples": INT, "max_eval_samples": INT, "metric": STR, "lang": STR,
       "mlqa_pairs": STR}  # fmt: skip
_PRETRAIN = {"model_name": STR, "tokenizer_name": STR, "max_pos": INT, "attention_window": STR,
             "attention": STR, "train_file_path": STR, "val_file_path": STR, "block_size": INT,
             "mlm_probability": FLOAT, "max_eval_blocks": INT}  # fmt: skip
COMMON_TYPES: dict[str, dict[str, ValueType]] = {
    "pretrain": {**_TRAINING, **_PRETRAIN},
    "train": {**_TRAINING, **_QA},
    "evaluate": {**_TRAINING, **_QA},
}
COMMON = {stage: frozenset(types) for stage, types in COMMON_TYPES.items()}
# the targets of `longify convert --target` (longify.targets.TARGET_NAMES, which a test checks: named here so
# that planning a spec imports no torch), the first its default
CONVERT_TARGETS = ("longformer", "full", "bigbird")
DEFAULT_TARGET = CONVERT_TARGETS[0]
# a model's ``convert`` block: its keys are the flags of `longify convert` (``_`` for ``-``)
CONVERT_TYPES = {"target": choice(*CONVERT_TARGETS), "max_pos": INT, "attention_window": STR,
                 "position_init": choice("copy", "interpolate", "random"), "global_init": choice("copy", "random"),
                 "block_size": INT, "num_random_blocks": INT, "no_verify": SWITCH, "tolerance": FLOAT,
                 "tokenizer": STR, "seed": INT}  # fmt: skip
# the options of one target only (`longify convert` refuses them with another): each target's
# ``Target.options``, which a test checks (named here, as CONVERT_TARGETS is, so that planning imports no torch)
TARGET_OPTIONS = {"attention_window": "longformer", "global_init": "longformer", "block_size": "bigbird",
                  "num_random_blocks": "bigbird"}  # fmt: skip
POSITIVE = ("max_pos", "block_size", "num_random_blocks")  # integers that must be at least 1
SEED_KEYS = ("seed",)  # values that become a run's seed: numpy's range


@dataclass(frozen=True)
class Flags:
    accepted: frozenset[str]  # flag names without the leading "--"
    refused: Mapping[str, str]  # flag name -> why the command refuses it
    types: Mapping[str, ValueType]  # accepted flag name -> what it takes


def _option_names(parser: Any) -> set[str]:
    return {
        option[2:]
        for action in parser._actions  # argparse keeps no public list of a parser's options
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


@cache
def command_flags(stage: str) -> Flags:
    """The flags of the command of ``stage`` (``pretrain``, ``train`` or ``evaluate``)."""
    from longify.legacy import LEGACY_FLAGS

    refused: Mapping[str, str] = {}
    if stage == "pretrain":
        from longify.mlm.args import PRETRAIN_REFUSED, pretrain_parser

        parser = pretrain_parser()
        refused = PRETRAIN_REFUSED
    else:
        from longify.qa.args import qa_parser

        parser = qa_parser()
    names = _option_names(parser) | {flag[2:] for flag in LEGACY_FLAGS}
    why = {flag[2:]: reason for flag, reason in refused.items()}
    types = {**LEGACY_TYPES, **action_types(parser)}
    return Flags(frozenset(names - set(why)), why, types)


def action_type(action: Action) -> ValueType:
    """What an argparse action takes, as a ``ValueType``."""
    if action.nargs == 0:
        return SWITCH
    convert = action.type or str
    many = action.nargs in ("+", "*")
    if getattr(convert, "__name__", "") == "string_to_bool":
        return BOOL if action.nargs == "?" else BOOL_VALUE
    if action.choices:
        values = tuple(map(str, action.choices))
        return ValueType(str, choice(*values).expected, many, values)
    expected = {int: INT, float: FLOAT, str: STR}.get(convert)  # type: ignore[call-overload]
    text = expected.expected if expected else f"a value {action.option_strings[0]} accepts"
    return ValueType(convert, text, many)  # type: ignore[arg-type]


def action_types(parser: Any) -> dict[str, ValueType]:
    """Flag name (without ``--``, each of its spellings) -> what it takes."""
    return {
        option[2:]: action_type(action)
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


# YAML 1.1 reads an unquoted no / off / n as false: a choice flag that has the choice ``no`` gets ``no``
FALSE_CHOICE = "no"


def _choice_of_false(value: Any, kind: ValueType) -> bool:
    return value is False and FALSE_CHOICE in kind.choices


def _item_problem(item: Any, kind: ValueType) -> str | None:
    if kind.convert is None and isinstance(item, str) and item.lower() in BOOL_WORDS:  # `x: "true"`
        return (
            f"expected {kind.expected}, not a string (quoted, or made by ${{VAR}}: the flag takes no value)"
        )
    if isinstance(item, (dict, list, bool)) or kind.convert is None:
        return f"expected {kind.expected}"
    try:
        parsed = kind.convert(str(item))
    except (ValueError, TypeError, ArgumentTypeError):
        return f"expected {kind.expected}"
    if kind.choices and str(parsed) not in kind.choices:
        return f"expected {kind.expected}"
    return None


def value_problem(value: Any, kind: ValueType) -> str | None:
    """Why the runner's rendering of ``value`` would not parse as ``kind`` (None: it would)."""
    if value is None:
        return None
    if isinstance(value, bool):
        if kind.convert is None or kind.convert is to_bool or _choice_of_false(value, kind):
            return None
        return f"expected {kind.expected}, got {value!r}"
    if isinstance(value, list) and not kind.many:
        return f"expected a single value, got {value!r}"
    if value == [] and kind.convert is not None:  # `--key` with no value: its parser (nargs +) refuses it
        return "expected at least one value, got []"
    for item in value if isinstance(value, list) else [value]:
        if (why := _item_problem(item, kind)) is not None:
            return f"{why}, got {value!r}"
    return None


def value_problems(block: Mapping[Any, Any], types: Mapping[str, ValueType], where: str) -> list[str]:
    """One line per value of ``block`` (at spec path ``where``) that its flag would refuse; keys without a
    type (unknown ones, reported elsewhere) are skipped. A seed must lie in numpy's range."""
    problems = []
    for key, value in block.items():
        kind = types.get(str(key))
        if kind is None:
            continue
        why = value_problem(value, kind)
        if why is None and str(key) in SEED_KEYS and value is not None and not seed_ok(int(str(value))):
            why = f"{EXPECTED}, got {value}"
        if why is not None:
            problems.append(f"{where}.{key}: {why}")
    return problems


def value_type(stage: str, key: str) -> ValueType | None:
    """What flag ``key`` of the stage's command takes (None: not one of its flags)."""
    return COMMON_TYPES[stage].get(key) or command_flags(stage).types.get(key)


def bool_argv(stage: str, key: str, value: bool) -> list[str]:
    """A spec's ``key: true|false`` as the stage's command takes it: ``--key true|false`` for a bool field
    (``false`` dropped would leave a default of true in force), the bare flag or nothing for a switch,
    ``--key no`` for false of a choice flag that has the choice ``no``."""
    kind = value_type(stage, key)
    if kind is None or kind.convert is None:
        return [f"--{key}"] if value else []
    if _choice_of_false(value, kind):  # `save_strategy: no`, which YAML reads as false
        return [f"--{key}", FALSE_CHOICE]
    return [f"--{key}", "true" if value else "false"]


def flag_problems(block: Mapping[Any, Any], stage: str, where: str) -> list[str]:
    """One line per key of ``block`` (at spec path ``where``) that is not a flag of the stage's command, and
    per value its flag would refuse."""
    keys = [str(key) for key in block if str(key) not in COMMON[stage]]
    if not keys:
        return value_problems(block, COMMON_TYPES[stage], where)
    flags = command_flags(stage)
    problems = []
    for key in keys:
        if key in flags.refused:
            problems.append(f"{where}.{key}: {flags.refused[key]}; remove it")
        elif key not in flags.accepted:
            problems.append(f"{where}.{key}: not a flag of {COMMANDS[stage]}")
    types = {k: v for k, v in {**flags.types, **COMMON_TYPES[stage]}.items() if k not in flags.refused}
    return problems + value_problems(block, types, where)
