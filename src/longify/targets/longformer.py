"""The ``longformer`` target: a standard HF ``LongformerForMaskedLM`` (allenai's ``convert_model_to_long``).

Positions extended to ``max_pos`` after RoBERTa's offset (BERT's table shifted onto it), local q/k/v copied,
global q/k/v copies of them or random; verified with the requested windows on inputs they cover, and with a
window widened to the source length (same weights) on inputs of the full source length.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    LongformerConfig,
    LongformerForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.errors import LongifyError
from longify.families import Family, position_offset
from longify.families.base import (
    CARRIED,  # copied verbatim (LongformerConfig's / BigBirdConfig's defaults differ)
)
from longify.targets.base import Check, Options, QAExtras, Target, Weights
from longify.targets.positions import extend_positions

DEFAULT_WINDOW = 512  # allenai's Longformer window
GLOBAL_INITS = ("copy", "random")
_ATTENTION_KEYS = ("query", "key", "value")
POSITIONS_KEY = "longformer.embeddings.position_embeddings.weight"


class Longformer(Target):
    name = "longformer"
    model_class = LongformerForMaskedLM
    summary = "HF Longformer: sliding-window + global attention (longify's fast exact kernels)"
    positions_key = POSITIONS_KEY
    global_projections = True
    label = "Longformer"
    model_type = "longformer"
    options = ("attention_window", "global_init")

    def check_options(self, options: Options) -> None:
        super().check_options(options)
        if options.global_init not in GLOBAL_INITS:
            raise LongifyError(
                f"--global-init: expected one of {', '.join(GLOBAL_INITS)}, got {options.global_init!r}"
            )
        if options.attention_window is not None:
            windows = parse_windows(options.attention_window)
            if isinstance(options.max_pos, int):
                check_window_fits(windows, options.max_pos)

    def check_source(
        self, config: PretrainedConfig, family: Family, options: Options, head_is_new: bool
    ) -> None:
        act = family.head_act(config)
        if act != "gelu" and not head_is_new:
            raise LongifyError(
                f"--target longformer: cannot be exact for this {family.model_type}: its MLM head applies {act!r}, "
                "and Longformer's head applies gelu"
            )

    def config(
        self, source: PretrainedConfig, family: Family, options: Options, tokenizer: PreTrainedTokenizerBase
    ) -> LongformerConfig:
        layers = family.canonical_config(source)["num_hidden_layers"]
        windows = fit_windows(options.attention_window, options.max_pos, layers)
        return long_config(source, options.max_pos, windows, tokenizer.sep_token_id, family)

    def position_offset(self, config: PretrainedConfig) -> int:
        return position_offset(config)

    def windows(self, config: PretrainedConfig) -> list[int]:
        window = getattr(config, "attention_window", None)
        if window is None:
            return []
        return [int(w) for w in window] if isinstance(window, list | tuple) else [int(window)]

    def source_key(self, family: Family, key: str) -> str | None:
        return family.source_key(key.replace("_global.", ".") if _is_global(key) else key)

    def weights(
        self,
        source: PreTrainedModel,
        family: Family,
        config: PretrainedConfig,
        options: Options,
        position_init: str,
        extend: Callable[..., torch.Tensor] = extend_positions,
    ) -> Weights:
        with torch.device("meta"):
            target_keys = {k: v.shape for k, v in LongformerForMaskedLM(config).state_dict().items()}
        state = build_state_dict(
            source,
            family,
            target_keys,
            src_offset=family.position_offset(source.config),
            dst_offset=self.position_offset(config),
            max_pos=options.max_pos,
            position_init=position_init,
            global_init=options.global_init,
            init_std=source.config.initializer_range,
            seed=options.seed,
            extend=extend,
        )
        new = [k for k in state if _is_global(k)] if options.global_init == "random" else []
        zeros = {k: family.zero_reason(k) or "" for k in state if self.source_key(family, k) is None}
        return Weights(state, new, zeros)

    def checks(self, config: PretrainedConfig, source_len: int) -> list[Check]:
        windows = list(config.attention_window)
        wide = 2 * source_len
        out = []
        for config_windows, length, full in (
            (windows, covered_length(source_len, windows), True),
            ([wide] * len(windows), source_len, False),
        ):
            cfg = copy.deepcopy(config)
            cfg.attention_window = config_windows
            out.append(Check(cfg, length, full))
            if min(windows) >= wide:
                break  # the requested windows already cover the source length
        return out

    def record(self, config: PretrainedConfig, options: Options) -> dict[str, Any]:
        return {"attention": "sliding-window + global", "attention_window": list(config.attention_window)}

    def card(self, record: dict[str, Any]) -> str:
        return f"""---
library_name: transformers
tags: [longformer, longify, fill-mask]
---
# {Path(record["output"]).name}

A Longformer ({record["max_pos"]} positions) converted by longify from `{record["source"]}` ({record["family"]}).

- position embeddings: `{record["position_init"]}` from the source's {record["source_max_len"]} positions
- attention window(s): {sorted(set(record["attention_window"]))}; global q/k/v: `{record["global_init"]}`
{verified_line(record)}
{head_line(record)}
{st_line(record)}
Load it with `AutoModelForMaskedLM.from_pretrained(...)` or `AutoModelForQuestionAnswering` (new QA head).
It still needs long masked-LM pretraining (`longify pretrain`) before the new positions are useful.
Details: `conversion.json`.
"""

    def describe(self, config: PretrainedConfig) -> str:
        return "A Longformer"

    def attention_text(self, config: PretrainedConfig) -> str:
        windows = sorted(set(self.windows(config)))
        return (
            f"sliding window {windows} (w/2 each side) + global attention on marked tokens; inputs padded to "
            f"a multiple of {max(windows)}; full attention only on inputs of up to {min(windows) // 2 + 1} tokens"
        )

    def qa_extras(self, config: PretrainedConfig) -> QAExtras:
        window = config.attention_window
        widest = max(window) if isinstance(window, list | tuple) else int(window)
        return QAExtras(global_attention=True, pad_multiple=widest)

    def frozen(self, parameter_name: str) -> bool:
        """MLM has no global tokens: the global q/k/v get no gradient (refreshed from the local ones at export)."""
        return "_global." in parameter_name

    def install_attention(self, model: PreTrainedModel, impl: str) -> PreTrainedModel:
        from longify.attention.install import set_attention

        return set_attention(model, impl)


def _is_global(key: str) -> bool:
    return any(f"self.{n}_global." in key for n in _ATTENTION_KEYS)


def verified_line(record: dict[str, Any]) -> str:
    """The card's line on the comparison with the source."""
    v = record["verification"]
    return (
        f"- verified against the source on inputs of {v['lengths'] if v else '-'} tokens:\n"
        f"  max |diff| hidden {_fmt(record, 'max_abs_diff_hidden')}, mean-pooled "
        f"{_fmt(record, 'max_abs_diff_pooled')}, MLM logits {_fmt(record, 'max_abs_diff_logits')}"
    )


def head_line(record: dict[str, Any]) -> str:
    new = "new, random init (the source had none): train it (`longify pretrain`) before using the logits"
    return "- MLM head: " + (new if record["mlm_head"] == "new" else "the source's")


def st_line(record: dict[str, Any]) -> str:
    st = record.get("sentence_transformers")
    if not st:
        return ""
    return (
        f"- sentence-transformers files kept ({', '.join(st['files'])}; max_seq_length {st['max_seq_length']}): "
        "`SentenceTransformer(path)` loads the long encoder with the source's pooling\n"
    )


def _fmt(record: dict[str, Any], field: str) -> str:
    v = (record.get("verification") or {}).get(field)
    return "-" if v is None else f"{v:.2e}"


def covered_length(source_len: int, windows: list[int]) -> int:
    """Longest input on which a window of ``min(windows)`` (w/2 each side) attends to every token."""
    return max(2, min(source_len, min(windows) // 2 + 1))


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


def long_config(
    config: PretrainedConfig,
    max_pos: int,
    windows: list[int],
    sep_token_id: int | None,
    family: Family | None = None,
) -> LongformerConfig:
    """The LongformerConfig of the converted model; ``max_pos`` usable positions after the offset. The values
    carried over are ``family``'s canonical ones (DistilBERT's ``dim`` is ``hidden_size``), else ``config``'s."""
    if family is not None:
        carried = {k: v for k, v in family.canonical_config(config).items() if k in CARRIED}
    else:
        carried = {k: getattr(config, k) for k in CARRIED if hasattr(config, k)}
    pad = carried.get("pad_token_id")
    if pad is None:
        raise LongifyError("config.json: pad_token_id is missing; Longformer numbers positions from it")
    return LongformerConfig(
        **carried,
        sep_token_id=sep_token_id if sep_token_id is not None else getattr(config, "sep_token_id", None),
        max_position_embeddings=max_pos + pad + 1,
        attention_window=windows,
    )


def build_state_dict(
    source: PreTrainedModel,
    family: Family,
    target_keys: dict[str, torch.Size],
    *,
    src_offset: int,
    dst_offset: int,
    max_pos: int,
    position_init: str,
    global_init: str,
    init_std: float,
    seed: int,
    extend: Callable[..., torch.Tensor] = extend_positions,
) -> dict[str, torch.Tensor]:
    """Fill every key of a LongformerForMaskedLM from the source state dict (positions by ``extend``); fail
    loudly on leftovers."""
    src_sd = source.state_dict()
    used: set[str] = set()
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in target_keys.items():
        local_key = key
        is_global = _is_global(key)
        if is_global:
            local_key = key.replace("_global.", ".")
        src_key = family.source_key(local_key)
        if src_key is None and family.zero_reason(key) is not None:
            out[key] = torch.zeros(shape)  # a tensor the family lacks and whose zeros are exact (token types)
            continue
        if src_key not in src_sd:
            raise LongifyError(
                f"source checkpoint: missing {src_key!r} (needed for {key}); is it a {family.model_type}?"
            )
        used.add(src_key)
        value = src_sd[src_key].detach().clone().float()
        if key.endswith("embeddings.position_embeddings.weight"):
            value = extend(
                value,
                src_offset=src_offset,
                dst_offset=dst_offset,
                new_len=max_pos,
                method=position_init,
                init_std=init_std,
                seed=seed,
            )
        elif is_global and global_init == "random":
            value = (
                torch.randn(value.shape, generator=gen) * init_std
                if value.dim() > 1
                else torch.zeros_like(value)
            )
        if value.shape != shape:
            raise LongifyError(
                f"source checkpoint: {src_key} has shape {tuple(value.shape)}, expected {tuple(shape)}"
            )
        out[key] = value
    leftover = sorted(k for k in src_sd if k not in used and not k.startswith(family.dropped_prefixes))
    if leftover:
        raise LongifyError(
            f"source checkpoint: parameters with no Longformer counterpart: {', '.join(leftover[:5])}"
        )
    return out
