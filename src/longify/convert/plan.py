"""Step 1 of a conversion, the plan: the options checked before anything loads (the target's own with them),
then the source loaded and checked, and the target's config it becomes (``longify.targets``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.errors import LongifyError, first_line
from longify.families import Family, get_family
from longify.loading import LOAD_ERRORS, check_model_source, check_tokenizer, check_vocab, load_failure
from longify.seeds import check_seed
from longify.targets import DEFAULT_TARGET, Target, get_target
from longify.targets.longformer import (  # re-exported: pretrain fits its windows with them
    DEFAULT_WINDOW,
    GLOBAL_INITS,
    check_window_fits,
    fit_windows,
    long_config,
    parse_windows,
)
from longify.targets.positions import POSITION_INITS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """What ``longify convert`` is asked to do; checked on creation, before any loading."""

    max_pos: int = 4096
    attention_window: int | str | list[int] | None = None  # None: DEFAULT_WINDOW, narrowed to max_pos
    position_init: str = "copy"
    global_init: str = "copy"
    verify: bool = True
    tolerance: float = 1e-4
    tokenizer: str | None = None
    seed: int = 0
    target: str = DEFAULT_TARGET
    block_size: int | None = None  # bigbird: None is 64
    num_random_blocks: int | None = None  # bigbird: None is 3

    def __post_init__(self) -> None:
        if self.position_init not in POSITION_INITS:
            raise LongifyError(
                f"--position-init: expected one of {', '.join(POSITION_INITS)}, got {self.position_init!r}"
            )
        get_target(self.target).check_options(self)
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise LongifyError(f"--tolerance: expected a finite number >= 0, got {self.tolerance}")
        check_seed("--seed", self.seed)


@dataclass
class Plan:
    """A loaded source and the long model it becomes (``long``: the target's config)."""

    src: str
    options: ConvertOptions
    config: PretrainedConfig
    source: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: Family
    new_weights: list[str]  # source weights that were missing and start random (e.g. the MLM head)
    long: PretrainedConfig
    windows: list[int] = field(default_factory=list)  # per layer (Target.windows); [] for a target without
    target: Target = field(default_factory=lambda: get_target(DEFAULT_TARGET))

    @property
    def src_offset(self) -> int:
        return self.family.position_offset(self.config)

    @property
    def dst_offset(self) -> int:
        return self.target.position_offset(self.long)

    @property
    def source_len(self) -> int:
        return self.config.max_position_embeddings - self.src_offset

    @property
    def head_is_new(self) -> bool:
        """The source had no MLM head: its logits are those of a random head and are not verified."""
        return head_is_new(self.family, self.new_weights)


def head_is_new(family: Family, new_weights: list[str]) -> bool:
    return any(not k.startswith(family.prefix) for k in new_weights)


def make_plan(src: str, options: ConvertOptions) -> Plan:
    """Load ``src`` and settle the target: the source must be shorter than ``max_pos``, and a pair the target
    cannot reproduce exactly is refused."""
    logger.info("loading %s", src)
    config, source, tokenizer, new_weights = load_source(src, options.tokenizer, options.seed)
    family = get_family(config.model_type)
    source_len = config.max_position_embeddings - family.position_offset(config)
    if not isinstance(options.max_pos, int) or options.max_pos <= source_len:
        raise LongifyError(
            f"--max-pos: must be larger than the source's {source_len} positions, got {options.max_pos}"
        )
    target = get_target(options.target)
    family.check_target(target.name, config)
    target.check_source(config, family, options, head_is_new(family, new_weights))
    long = target.config(config, family, options, tokenizer)
    windows = target.windows(long)
    return Plan(src, options, config, source, tokenizer, family, new_weights, long, windows, target)


def load_source(
    src: str, tokenizer_name: str | None, seed: int = 0
) -> tuple[PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, list[str]]:
    """The source's config, masked-LM model and tokenizer, and the weights it lacked (a bare encoder saved
    without its MLM head gets a randomly initialised one, drawn from ``seed`` so that a rerun converts to the
    same weights: recorded and warned about, never "verified")."""
    check_model_source(src, "SRC")
    try:
        config = AutoConfig.from_pretrained(src)
    except LOAD_ERRORS as err:
        where = "directory" if Path(src).exists() else "hub id (is the Hub reachable? HF_HUB_OFFLINE set?)"
        raise LongifyError(
            f"{src}: cannot read the model config from this {where}: {first_line(err)}"
        ) from None
    family = get_family(getattr(config, "model_type", None))
    family.check(config)
    try:
        with torch.random.fork_rng(devices=[]):  # the missing weights' init; the caller's RNG is untouched
            torch.manual_seed(seed)
            model, info = AutoModelForMaskedLM.from_pretrained(
                src, dtype=torch.float32, output_loading_info=True
            )
    except LOAD_ERRORS as err:
        raise load_failure(src, err, "the model weights") from None
    tok_src = tokenizer_name or src
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_src)
    except LOAD_ERRORS as err:
        raise LongifyError(
            f"{tok_src}: cannot load a tokenizer ({first_line(err)}); pass --tokenizer DIR"
        ) from None
    check_tokenizer(tokenizer, tok_src, "--tokenizer DIR")
    check_vocab(tokenizer, tok_src, config, src)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        logger.warning(
            "%s has no weights for %s: they start random (e.g. an encoder saved without its MLM head); "
            "recorded in conversion.json as new_weights, and the logits are not verified",
            src,
            ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""),
        )
    return config, model.eval(), tokenizer, missing


__all__ = [
    "DEFAULT_WINDOW",
    "GLOBAL_INITS",
    "ConvertOptions",
    "Plan",
    "check_window_fits",
    "fit_windows",
    "load_source",
    "long_config",
    "make_plan",
    "parse_windows",
]
