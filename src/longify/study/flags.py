"""The flags of the commands a spec's flag blocks become, so that an unknown key is refused when the spec
is planned (one line naming its path), not when its job runs after the jobs it depends on.

A block accepts exactly what its command's parser accepts: the option strings of its ``HfArgumentParser``
(dataclass fields, their aliases and ``--no_X`` forms) plus the dropped flags ``longify.legacy`` translates,
less those the command refuses. Building a parser imports transformers (and torch): done once, on demand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

# stage -> the command its block becomes
COMMANDS = {"pretrain": "longify pretrain", "train": "longify qa train", "evaluate": "longify qa evaluate"}

# Common flags of each command (a subset of what its parser accepts, which a test checks), so that a spec
# using only these plans without importing transformers; any other key is decided by the parser itself.
_TRAINING = ("seed", "learning_rate", "weight_decay", "adam_epsilon", "warmup_steps",
             "max_steps", "num_train_epochs", "logging_steps", "eval_steps", "save_steps", "eval_strategy",
             "save_strategy", "save_total_limit", "max_grad_norm", "per_device_train_batch_size",
             "per_device_eval_batch_size", "gradient_accumulation_steps", "fp16", "bf16", "disable_tqdm",
             "report_to", "evaluate_during_training", "per_gpu_train_batch_size", "per_gpu_eval_batch_size",
             "logging_dir")  # fmt: skip
_QA = ("model_type", "do_lower_case", "tokenizer_name", "attention", "train_file", "predict_file", "languages",
       "max_seq_length", "doc_stride", "max_query_length", "n_best_size", "max_answer_length", "concat_contexts",
       "concat_seed", "max_train_samples", "max_eval_samples", "metric", "lang", "mlqa_pairs")  # fmt: skip
COMMON = {
    "pretrain": frozenset(_TRAINING) | {"model_name", "tokenizer_name", "max_pos", "attention_window",
        "attention", "train_file_path", "val_file_path", "block_size", "mlm_probability", "max_eval_blocks"},
    "train": frozenset(_TRAINING + _QA),
    "evaluate": frozenset(_TRAINING + _QA),
}  # fmt: skip


@dataclass(frozen=True)
class Flags:
    accepted: frozenset[str]  # flag names without the leading "--"
    refused: Mapping[str, str]  # flag name -> why the command refuses it


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
    return Flags(frozenset(names - set(why)), why)


def flag_problems(block: Mapping[Any, Any], stage: str, where: str) -> list[str]:
    """One line per key of ``block`` (at spec path ``where``) that is not a flag of the stage's command."""
    keys = [str(key) for key in block if str(key) not in COMMON[stage]]
    if not keys:
        return []
    flags = command_flags(stage)
    problems = []
    for key in keys:
        if key in flags.refused:
            problems.append(f"{where}.{key}: {flags.refused[key]}; remove it")
        elif key not in flags.accepted:
            problems.append(f"{where}.{key}: not a flag of {COMMANDS[stage]}")
    return problems
