"""Loading a QA model and its tokenizer, with the checks that go with it (model type, positions)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from longify.artifacts import CONVERSION_FILE
from longify.errors import LongifyError, first_line
from longify.families import CONVERTIBLE, FAMILIES, usable_positions
from longify.loading import LOAD_ERRORS, check_model_source, load_failure
from longify.targets import Target, target_of

logger = logging.getLogger(__name__)


def load_config(model: str, flag: str = "--model_name_or_path") -> Any:
    check_model_source(model, flag)
    try:
        return AutoConfig.from_pretrained(model)
    except LOAD_ERRORS as err:
        raise LongifyError(f"{model}: cannot read the model config: {first_line(err)}") from None


def source_family(model: str) -> str | None:
    """The family a ``longify convert`` output was converted from (its conversion.json), if known."""
    path = Path(model) / CONVERSION_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("family") if path.is_file() else None
    except (OSError, ValueError):
        return None


def check_model_type(model_type: str | None, config: Any, model: str) -> None:
    """The seed's ``--model_type`` must name the model's family (a model converted into a class of another
    type, a Longformer or a BigBird, may be named by the family it came from, as the seed does with
    ``--model_type roberta``)."""
    actual = getattr(config, "model_type", None)
    if model_type is None or model_type == actual:
        return
    if actual not in FAMILIES and _known_target(config) is not None:
        source = source_family(model)
        if model_type == source or (source is None and model_type in CONVERTIBLE):
            logger.info(
                "--model_type %s: %s is a %s converted from %s; using %s",
                model_type,
                model,
                actual,
                model_type,
                actual,
            )
            return
    raise LongifyError(f"--model_type {model_type}: {model} is a {actual!r} model (config.json model_type)")


def _known_target(config: Any) -> Target | None:
    """The target whose class ``config`` names, None for a model type no target knows (any other encoder)."""
    try:
        return target_of(config)
    except LongifyError:
        return None


def load_qa_model(name: str, attention: str = "fast") -> PreTrainedModel:
    """``AutoModelForQuestionAnswering`` (a new span head on an MLM checkpoint: the QA class of the model's
    target) with its target's attention installed: Longformer's kernel named by ``--attention`` (longify's
    exact fast kernel by default), BigBird's choice of attention per batch length."""
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(name, dtype=torch.float32)
    except LOAD_ERRORS as err:
        raise load_failure(name, err, "a question-answering model") from None
    target = _known_target(model.config)
    if target is not None:
        target.install_attention(model, attention)
        if target.global_projections:  # the --attention flag names Longformer's kernels
            logger.info("--attention %s: installed into %s", attention, name)
    return model


def model_max_length(config: Any, tokenizer: Tokenizer) -> int:
    """Tokens the model accepts: its target's usable positions (the position table less RoBERTa-style
    offsets; any other encoder's table whole), and the tokenizer's limit."""
    target = _known_target(config)
    if not getattr(config, "max_position_embeddings", None):
        positions = 512
    elif target is not None:
        positions = target.usable_positions(config)
    else:
        positions = usable_positions(config, default_offset=0)
    tok_max = tokenizer.model_max_length if tokenizer.model_max_length < 10**9 else positions
    return min(positions, tok_max)


def effective_max_seq_length(requested: int, config: Any, tokenizer: Tokenizer) -> int:
    limit = model_max_length(config, tokenizer)
    if requested > limit:
        logger.info(
            "--max_seq_length %d: the model takes at most %d tokens; using %d", requested, limit, limit
        )
        return limit
    return requested
