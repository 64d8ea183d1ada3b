"""Step 1 of a conversion, the plan: the options checked before anything loads, then the source loaded and
checked, and the Longformer config it becomes (every value LongformerConfig defaults differently carried over:
vocab size, layer-norm eps, type vocab size, special token ids)."""

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
    LongformerConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.convert.families import Family, get_family, position_offset
from longify.convert.positions import POSITION_INITS
from longify.errors import LongifyError, first_line
from longify.loading import LOAD_ERRORS, check_model_source, check_tokenizer, check_vocab, load_failure
from longify.seeds import check_seed

logger = logging.getLogger(__name__)

GLOBAL_INITS = ("copy", "random")
# Values copied verbatim from the source config (LongformerConfig's defaults differ for several).
_CARRIED = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
)
_ATTENTION_KEYS = ("query", "key", "value")
DEFAULT_WINDOW = 512  # allenai's Longformer window


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

    def __post_init__(self) -> None:
        if self.position_init not in POSITION_INITS:
            raise LongifyError(
                f"--position-init: expected one of {', '.join(POSITION_INITS)}, got {self.position_init!r}"
            )
        if self.global_init not in GLOBAL_INITS:
            raise LongifyError(
                f"--global-init: expected one of {', '.join(GLOBAL_INITS)}, got {self.global_init!r}"
            )
        if self.attention_window is not None:
            windows = parse_windows(self.attention_window)
            if isinstance(self.max_pos, int):
                check_window_fits(windows, self.max_pos)
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise LongifyError(f"--tolerance: expected a finite number >= 0, got {self.tolerance}")
        check_seed("--seed", self.seed)


@dataclass
class Plan:
    """A loaded source and the Longformer it becomes."""

    src: str
    options: ConvertOptions
    config: PretrainedConfig
    source: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: Family
    new_weights: list[str]  # source weights that were missing and start random (e.g. the MLM head)
    long: LongformerConfig
    windows: list[int] = field(default_factory=list)

    @property
    def src_offset(self) -> int:
        return self.family.position_offset(self.config)

    @property
    def dst_offset(self) -> int:
        return position_offset(self.long)

    @property
    def source_len(self) -> int:
        return self.config.max_position_embeddings - self.src_offset

    @property
    def head_is_new(self) -> bool:
        """The source had no MLM head: its logits are those of a random head and are not verified."""
        return any(not k.startswith(self.family.prefix) for k in self.new_weights)


def make_plan(src: str, options: ConvertOptions) -> Plan:
    """Load ``src`` and settle the target: the source must be shorter than ``max_pos``."""
    logger.info("loading %s", src)
    config, source, tokenizer, new_weights = load_source(src, options.tokenizer, options.seed)
    family = get_family(config.model_type)
    source_len = config.max_position_embeddings - family.position_offset(config)
    if not isinstance(options.max_pos, int) or options.max_pos <= source_len:
        raise LongifyError(
            f"--max-pos: must be larger than the source's {source_len} positions, got {options.max_pos}"
        )
    windows = fit_windows(options.attention_window, options.max_pos, config.num_hidden_layers)
    long = long_config(config, options.max_pos, windows, tokenizer.sep_token_id)
    return Plan(src, options, config, source, tokenizer, family, new_weights, long, windows)


def parse_windows(attention_window: int | str | list[int], num_layers: int | None = None) -> list[int]:
    """One even positive window per layer from an int, a list, or a string like ``"512"`` / ``"64,64,128"``."""
    if isinstance(attention_window, str):
        try:
            values = [int(v) for v in attention_window.replace(",", " ").split()]
        except ValueError:
            raise LongifyError(
                f"--attention-window: expected an even integer or a comma-separated list, got {attention_window!r}"
            ) from None
    elif isinstance(attention_window, int):
        values = [attention_window]
    else:
        values = [int(v) for v in attention_window]
    if not values or any(v <= 0 or v % 2 for v in values):
        raise LongifyError(f"--attention-window: every window must be a positive even integer, got {values}")
    if num_layers is not None:
        if len(values) == 1:
            values = values * num_layers
        elif len(values) != num_layers:
            raise LongifyError(
                f"--attention-window: got {len(values)} per-layer values but the model has {num_layers} layers"
            )
    return values


def fit_windows(
    given: int | str | list[int] | None,
    max_pos: int,
    num_layers: int | None = None,
    flags: tuple[str, str] = ("--attention-window", "--max-pos"),
) -> list[int]:
    """The windows of a conversion to ``max_pos`` positions: ``given`` ones wider than the positions are
    refused (``flags``: the window's and the positions' flag names); without them, ``DEFAULT_WINDOW``,
    narrowed to the positions when they are fewer."""
    if given is None:
        return parse_windows(min(DEFAULT_WINDOW, max_pos - max_pos % 2), num_layers)
    windows = parse_windows(given, num_layers)
    check_window_fits(windows, max_pos, *flags)
    return windows


def check_window_fits(
    windows: list[int], max_pos: int, window_flag: str = "--attention-window", pos_flag: str = "--max-pos"
) -> None:
    """Refuse a window wider than the positions: no token has that many neighbours, and Longformer pads
    every input to a multiple of its window (verification would run every input at the window's length)."""
    if max_pos < 2:
        return  # no window fits: the positions' own check (against the source's) says what is wrong
    widest = max(windows)
    if widest > max_pos:
        most = max_pos - max_pos % 2  # windows are even
        raise LongifyError(f"{window_flag} {widest}: larger than {pos_flag} {max_pos}; give at most {most}")


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


def long_config(
    config: PretrainedConfig, max_pos: int, windows: list[int], sep_token_id: int | None
) -> LongformerConfig:
    """The LongformerConfig of the converted model; ``max_pos`` usable positions after the offset."""
    carried = {k: getattr(config, k) for k in _CARRIED if hasattr(config, k)}
    pad = carried.get("pad_token_id")
    if pad is None:
        raise LongifyError("config.json: pad_token_id is missing; Longformer numbers positions from it")
    return LongformerConfig(
        **carried,
        sep_token_id=sep_token_id if sep_token_id is not None else getattr(config, "sep_token_id", None),
        max_position_embeddings=max_pos + pad + 1,
        attention_window=windows,
    )
