"""Arguments of ``longify pretrain``: model and data dataclasses beside transformers' TrainingArguments.

Field names follow the seed's ``run_long_lm.py`` (``--max_pos``, ``--train_file_path``,
``--val_file_path``, ``--model_name``) so its command lines parse unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from longify.attention import check_attention_flag
from longify.cpu import BF16_ON_EMULATED_CPU_HELP
from longify.errors import LongifyError
from longify.hfargs import parse_hf_args
from longify.targets import DEFAULT_TARGET, TARGET_NAMES, get_target
from longify.targets.bigbird import DEFAULT_BLOCK_SIZE, DEFAULT_RANDOM_BLOCKS

DEFAULT_MAX_POS = 4096  # --max_pos when a short model is converted
DEFAULT_WINDOW = "512"  # --attention_window when not given (narrowed to --max_pos when that is smaller)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "A long model of any target (used as is: a Longformer, a BigBird, or a `full` conversion) "
            "or a short encoder (converted first to --target with --max_pos)."
        }
    )
    model_name: str | None = field(default=None, metadata={"help": "Name of the run (TensorBoard run name)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    max_pos: int | None = field(
        default=None,
        metadata={
            "help": f"Positions of the long model: the conversion target ({DEFAULT_MAX_POS} when not given); for "
            "a Longformer, at most its own (the default)."
        },
    )
    attention_window: str = field(
        default=DEFAULT_WINDOW,
        metadata={
            "help": "Window for the conversion: one even value or a per-layer list, at most --max_pos (the "
            "default, 512, is narrowed to --max_pos when that is smaller)."
        },
    )
    target: str | None = field(
        default=None,
        metadata={
            "help": f"The long target a short source is converted to: {', '.join(TARGET_NAMES)} (default "
            f"{DEFAULT_TARGET}); a long model is trained as the target it is (another --target is refused)."
        },
    )
    bigbird_block_size: int | None = field(
        default=None,
        metadata={
            "help": f"--target bigbird: tokens per attention block ({DEFAULT_BLOCK_SIZE} when not given)."
        },
    )
    num_random_blocks: int | None = field(
        default=None,
        metadata={
            "help": f"--target bigbird: random blocks per query block ({DEFAULT_RANDOM_BLOCKS} when not given)."
        },
    )
    attention: str = field(
        default="fast",
        metadata={"help": "Longformer attention kernel: 'fast' (longify's exact kernel) or 'hf'."},
    )
    copy_global_projections: bool = field(
        default=True,
        metadata={
            "help": "After training, copy the trained local q/k/v into the global ones (a Longformer's; allenai)."
        },
    )
    bf16_on_emulated_cpu: bool = field(default=False, metadata={"help": BF16_ON_EMULATED_CPU_HELP})

    def __post_init__(self) -> None:
        if self.max_pos is not None and self.max_pos <= 0:
            raise LongifyError(f"--max_pos: expected a positive integer, got {self.max_pos}")
        check_attention_flag(self.attention)
        self.check_target_flags()

    def check_target_flags(self) -> None:
        """``--target`` names a target; the options of one target are refused with another (one line)."""
        if self.target is not None and self.target not in TARGET_NAMES:
            raise LongifyError(f"--target: expected one of {', '.join(TARGET_NAMES)}, got {self.target!r}")
        target = get_target(self.target or DEFAULT_TARGET)
        for flag, option, value in (("--bigbird_block_size", "block_size", self.bigbird_block_size),
                                    ("--num_random_blocks", "num_random_blocks", self.num_random_blocks)):  # fmt: skip
            if value is None:
                continue
            if option not in target.options:
                owner = next(t for t in TARGET_NAMES if option in get_target(t).options)
                raise LongifyError(f"{flag}: {get_target(owner).label}'s; give --target {owner} with it")
            if value <= 0:
                raise LongifyError(f"{flag}: expected a positive integer, got {value}")
        if "attention_window" not in target.options and self.attention_window != DEFAULT_WINDOW:
            raise LongifyError(f"--attention_window: Longformer's; --target {self.target} has no window")


@dataclass
class DataArguments:
    train_file_path: str | None = field(
        default=None,
        metadata={"help": "Training text: WikiText .raw, .txt, .jsonl (comma-separated for several)."},
    )
    val_file_path: str | None = field(default=None, metadata={"help": "Evaluation text, same formats."})
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets name (where reachable)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The datasets config name."})
    text_field: str = field(default="text", metadata={"help": "Field holding the text in .jsonl / datasets."})
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per training block (default max_pos)."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Tokenisation threads (in-process; default: min(CPUs, 8), 1 below 1 MB of text)."},
    )
    data_cache_dir: str | None = field(default=None, metadata={"help": "Cache of tokenised blocks."})
    max_eval_blocks: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many blocks."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise LongifyError(f"--mlm_probability: expected a value in (0, 1), got {self.mlm_probability}")
        for flag, value in (("--block_size", self.block_size), ("--max_eval_blocks", self.max_eval_blocks)):
            if value is not None and value <= 0:
                raise LongifyError(f"{flag}: expected a positive integer, got {value}")
        if self.train_file_path is None and self.dataset_name is None and self.val_file_path is None:
            raise LongifyError("--train_file_path / --val_file_path (or --dataset_name): no data given")


# run_squad.py flags that pretraining has no use for: an error, not a log line promising an action
PRETRAIN_REFUSED = {
    "--do_lower_case": "a `qa train` flag; in pretraining the tokenizer's own normaliser decides casing",
    "--model_type": "a `qa train` flag; pretraining reads the model type from the model's config.json",
}


@dataclass
class PretrainArgs:
    """Everything one ``longify pretrain`` run needs, after legacy flags were translated."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    overwrite_output_dir: bool = False
    notes: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)


def pretrain_parser() -> HfArgumentParser:
    """The parser behind ``longify pretrain`` (no abbreviated flags: ``--learning_rat`` or a config key
    ``learning_rat`` is refused, not taken for ``--learning_rate``)."""
    return HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), allow_abbrev=False)


def parse_pretrain_args(argv: Sequence[str]) -> PretrainArgs:
    """Parse a seed-style command line, or a single YAML/JSON config file (flags after it override it)."""
    (model, data, training), translated = parse_hf_args(argv, pretrain_parser(), refused=PRETRAIN_REFUSED)
    if data.block_size is not None and model.max_pos is not None and data.block_size > model.max_pos:
        raise LongifyError(
            f"--block_size {data.block_size}: larger than --max_pos {model.max_pos}, the positions of the long model"
        )
    if model.model_name and training.run_name in (None, training.output_dir):
        training.run_name = model.model_name
    return PretrainArgs(
        model=model,
        data=data,
        training=training,
        overwrite_output_dir=bool(translated.extras.get("overwrite_output_dir")),
        notes=translated.notes,
        argv=list(argv),
    )
