"""Convert a short pre-trained encoder into a standard HF ``LongformerForMaskedLM`` checkpoint.

The procedure is allenai's ``convert_model_to_long.ipynb`` done on the state dict, so the result is a
plain ``longformer`` checkpoint that loads with the Auto classes and no custom code:

1. the source config becomes a LongformerConfig (every value that LongformerConfig defaults
   differently is carried over: vocab size, layer-norm eps, type vocab size, special token ids);
2. position embeddings are extended to ``max_pos`` (copy / interpolate / random, see positions.py);
3. local q/k/v are copied; the global q/k/v start as copies of them (or random);
4. the result is verified against the source and written atomically with conversion.json and a model card.
"""

from __future__ import annotations

import copy
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    LongformerConfig,
    LongformerForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.convert.families import Family, get_family, position_offset
from longify.convert.positions import POSITION_INITS, extend_positions
from longify.convert.verify import (
    Verification,
    compare_models,
    covered_length,
    merge_verifications,
    verification_batches,
)
from longify.errors import LongifyError, first_line
from longify.loading import LOAD_ERRORS, check_model_source, load_failure
from longify.locks import output_lock
from longify.outdir import atomic_output_dir, check_output_dir, clean_leftovers
from longify.runinfo import git_hash, library_versions, now_iso, write_json_atomic

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


def _load_source(
    src: str, tokenizer_name: str | None
) -> tuple[PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase, list[str]]:
    """The source's config, masked-LM model and tokenizer, and the weights it lacked (a bare encoder saved
    without its MLM head gets a randomly initialised one: recorded and warned about, never "verified")."""
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
        model, info = AutoModelForMaskedLM.from_pretrained(src, dtype=torch.float32, output_loading_info=True)
    except LOAD_ERRORS as err:
        raise load_failure(src, err, "the model weights") from None
    tok_src = tokenizer_name or src
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_src)
    except LOAD_ERRORS as err:
        raise LongifyError(
            f"{tok_src}: cannot load a tokenizer ({first_line(err)}); pass --tokenizer DIR"
        ) from None
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
    config: PretrainedConfig, family: Family, max_pos: int, windows: list[int], sep_token_id: int | None
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
) -> dict[str, torch.Tensor]:
    """Fill every key of a LongformerForMaskedLM from the source state dict; fail loudly on leftovers."""
    src_sd = source.state_dict()
    used: set[str] = set()
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in target_keys.items():
        local_key = key
        is_global = any(f"self.{n}_global." in key for n in _ATTENTION_KEYS)
        if is_global:
            local_key = key.replace("_global.", ".")
        src_key = family.source_key(local_key)
        if src_key not in src_sd:
            raise LongifyError(
                f"source checkpoint: missing {src_key!r} (needed for {key}); is it a {family.model_type}?"
            )
        used.add(src_key)
        value = src_sd[src_key].detach().clone().float()
        if key.endswith("embeddings.position_embeddings.weight"):
            value = extend_positions(
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


def materialize(config: LongformerConfig, state: dict[str, torch.Tensor]) -> LongformerForMaskedLM:
    """A LongformerForMaskedLM holding exactly ``state``, without spending time on a random init."""
    with torch.device("meta"):
        model = LongformerForMaskedLM(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def verify_conversion(
    source: PreTrainedModel,
    state: dict[str, torch.Tensor],
    lconfig: LongformerConfig,
    tokenizer: PreTrainedTokenizerBase,
    source_len: int,
    tolerance: float,
    seed: int,
) -> Verification:
    """Compare the converted weights with the source twice: with the requested windows on inputs they
    cover, and with a window widened to the source length (same weights) on inputs of the full source length."""
    windows = list(lconfig.attention_window)
    checks = []
    wide = 2 * source_len
    for config_windows, length, full in (
        (windows, covered_length(source_len, windows), True),
        ([wide] * len(windows), source_len, False),
    ):
        cfg = copy.deepcopy(lconfig)
        cfg.attention_window = config_windows
        model = materialize(cfg, state)
        logger.info(
            "verifying against the source: windows %s, inputs of up to %d tokens",
            sorted(set(config_windows)),
            length,
        )
        batches = verification_batches(tokenizer, lconfig.vocab_size, length, seed, full=full)
        checks.append(compare_models(source, model, batches, tolerance))
        if min(windows) >= wide:
            break  # the requested windows already cover the source length
    return merge_verifications(checks)


def _model_card(record: dict[str, Any]) -> str:
    base = record["source"]
    return f"""---
library_name: transformers
tags: [longformer, longify, fill-mask]
---
# {Path(record["output"]).name}

A Longformer ({record["max_pos"]} positions) converted by longify from `{base}` ({record["family"]}).

- position embeddings: `{record["position_init"]}` from the source's {record["source_max_len"]} positions
- attention window(s): {sorted(set(record["attention_window"]))}; global q/k/v: `{record["global_init"]}`
- verified against the source on inputs of {record["verification"]["lengths"] if record["verification"] else "-"} tokens:
  max |diff| hidden {_fmt(record, "max_abs_diff_hidden")}, MLM logits {_fmt(record, "max_abs_diff_logits")}

Load it with `AutoModelForMaskedLM.from_pretrained(...)` or `AutoModelForQuestionAnswering` (new QA head).
It still needs long masked-LM pretraining (`longify pretrain`) before the new positions are useful.
Details: `conversion.json`.
"""


def _fmt(record: dict[str, Any], field: str) -> str:
    v = (record.get("verification") or {}).get(field)
    return "-" if v is None else f"{v:.2e}"


def convert(
    src: str,
    out: str | Path,
    *,
    max_pos: int = 4096,
    attention_window: int | str | list[int] = 512,
    position_init: str = "copy",
    global_init: str = "copy",
    verify: bool = True,
    tolerance: float = 1e-4,
    overwrite: bool = False,
    tokenizer: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Convert ``src`` (directory or hub id) into a Longformer at ``out``; return the conversion record."""
    start = time.perf_counter()
    if position_init not in POSITION_INITS:
        raise LongifyError(
            f"--position-init: expected one of {', '.join(POSITION_INITS)}, got {position_init!r}"
        )
    if global_init not in GLOBAL_INITS:
        raise LongifyError(f"--global-init: expected one of {', '.join(GLOBAL_INITS)}, got {global_init!r}")
    parse_windows(attention_window)  # early check, before any loading
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise LongifyError(f"--tolerance: expected a finite number >= 0, got {tolerance}")
    with output_lock(out):  # before any long work: a second convert into OUT is refused, not raced
        check_output_dir(out, overwrite)
        clean_leftovers(Path(out))  # a killed convert's temporary copy: a model's size
        return _convert(
            src, Path(out), max_pos, attention_window, position_init, global_init, verify, tolerance,
            overwrite, tokenizer, seed, start,
        )  # fmt: skip


def _convert(
    src: str,
    out: Path,
    max_pos: int,
    attention_window: int | str | list[int],
    position_init: str,
    global_init: str,
    verify: bool,
    tolerance: float,
    overwrite: bool,
    tokenizer: str | None,
    seed: int,
    start: float,
) -> dict[str, Any]:
    logger.info("loading %s", src)
    config, source, tok, new_weights = _load_source(src, tokenizer)
    family = get_family(config.model_type)
    src_offset = family.position_offset(config)
    source_len = config.max_position_embeddings - src_offset
    if not isinstance(max_pos, int) or max_pos <= source_len:
        raise LongifyError(
            f"--max-pos: must be larger than the source's {source_len} positions, got {max_pos}"
        )
    windows = parse_windows(attention_window, config.num_hidden_layers)
    lconfig = long_config(config, family, max_pos, windows, tok.sep_token_id)

    logger.info(
        "building %s -> longformer with %d positions, windows %s",
        family.model_type,
        max_pos,
        sorted(set(windows)),
    )
    with torch.device("meta"):
        target_keys = {k: v.shape for k, v in LongformerForMaskedLM(lconfig).state_dict().items()}
    # interpolate moves the source rows: verify the mapping with the copied table, then put it in
    checked_init = "copy" if position_init == "interpolate" else position_init
    state = build_state_dict(
        source,
        family,
        target_keys,
        src_offset=src_offset,
        dst_offset=position_offset(lconfig),
        max_pos=max_pos,
        position_init=checked_init,
        global_init=global_init,
        init_std=config.initializer_range,
        seed=seed,
    )
    verification = None
    if verify:
        verification = verify_conversion(source, state, lconfig, tok, source_len, tolerance, seed)
        if not verification.passed:
            raise LongifyError(
                f"verification failed: max |diff| hidden {verification.max_abs_diff_hidden:.3g}, logits "
                f"{verification.max_abs_diff_logits:.3g} > --tolerance {tolerance:g}; nothing written"
            )
    if checked_init != position_init:
        key = "longformer.embeddings.position_embeddings.weight"
        table = source.state_dict()[family.source_key(key)].detach().float()
        state[key] = extend_positions(
            table,
            src_offset=src_offset,
            dst_offset=position_offset(lconfig),
            new_len=max_pos,
            method=position_init,
            init_std=config.initializer_range,
            seed=seed,
        )
        logger.info(
            "position table: %s (verified with the copied table, same weights otherwise)", position_init
        )
    model = materialize(lconfig, state)

    record: dict[str, Any] = {
        "source": src,
        "output": str(out),
        "family": family.model_type,
        "source_max_len": source_len,
        "source_position_offset": src_offset,
        "max_pos": max_pos,
        "max_position_embeddings": lconfig.max_position_embeddings,
        "attention_window": windows,
        "position_init": position_init,
        "global_init": global_init,
        "seed": seed,
        "verification": verification.to_dict() if verification else None,
        "new_weights": new_weights,  # source weights that were missing and start random (e.g. the MLM head)
        "seconds": None,
        "peak_rss_mb": None,
        "versions": library_versions(),
        "git": git_hash(),
        "created": now_iso(),
    }
    with atomic_output_dir(out, overwrite) as tmp:
        logger.info("writing %s", out)
        model.save_pretrained(tmp)
        tok.model_max_length = max_pos
        tok.init_kwargs["model_max_length"] = max_pos
        tok.save_pretrained(tmp)
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        write_json_atomic(tmp / "conversion.json", record)
        (tmp / "README.md").write_text(_model_card(record), encoding="utf-8")
    logger.info("done in %.1f s", record["seconds"])
    return record
