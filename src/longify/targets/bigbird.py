"""The ``bigbird`` target: HF ``BigBirdForMaskedLM`` with block-sparse attention (global, sliding and random
blocks of ``block_size`` tokens), the source's weights mapped onto it and the source's tokenizer kept.

BigBird numbers positions from 0 (no padding offset): RoBERTa's table loses its first ``pad + 1`` rows.
Its MLM head is BERT's (``cls.predictions.*``; RoBERTa's ``lm_head.*`` maps onto it), its pooler is new.
HF's BigBird computes full attention on inputs of at most ``(5 + 2 * num_random_blocks) * block_size``
tokens, and switches the model to full attention for good on the first such input: the comparison with the
source runs there, then the model is switched back and the block-sparse path is shown to run at ``max_pos``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BigBirdConfig,
    BigBirdForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.big_bird import modeling_big_bird
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

from longify.errors import LongifyError
from longify.families import Family
from longify.families.base import (
    CARRIED,  # copied verbatim (LongformerConfig's / BigBirdConfig's defaults differ)
)
from longify.families.bert import HEAD as BERT_HEAD  # cls.predictions.* -> canonical lm_head.*
from longify.targets.base import Check, Options, QAExtras, Target
from longify.targets.full import refuse_longformer_options
from longify.targets.longformer import head_line, st_line, verified_line

DEFAULT_BLOCK_SIZE = 64
DEFAULT_RANDOM_BLOCKS = 3
BLOCK_SPARSE = "block_sparse"


def full_attention_limit(block_size: int, num_random_blocks: int) -> int:
    """Longest input HF's BigBird runs with full attention (block-sparse needs more tokens than its
    2 global + 3 sliding + 2 * random blocks)."""
    return (5 + 2 * num_random_blocks) * block_size


def sizes(options: Options) -> tuple[int, int]:
    block = DEFAULT_BLOCK_SIZE if options.block_size is None else options.block_size
    rand = DEFAULT_RANDOM_BLOCKS if options.num_random_blocks is None else options.num_random_blocks
    return block, rand


class BigBird(Target):
    name = "bigbird"
    model_class = BigBirdForMaskedLM
    summary = "HF BigBird: block-sparse attention (global + sliding + random blocks)"
    positions_key = "bert.embeddings.position_embeddings.weight"
    label = "BigBird"
    model_type = "big_bird"
    options = ("block_size", "num_random_blocks")

    def check_options(self, options: Options) -> None:
        refuse_longformer_options(options)
        block, rand = sizes(options)
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise LongifyError(f"--block-size: expected a positive integer, got {block!r}")
        if isinstance(rand, bool) or not isinstance(rand, int) or rand < 1:
            raise LongifyError(f"--num-random-blocks: expected a positive integer, got {rand!r}")
        if not isinstance(options.max_pos, int):
            return
        if options.max_pos % block:
            raise LongifyError(
                f"--max-pos {options.max_pos}: not a multiple of --block-size {block} (BigBird pads every input "
                "to whole blocks, and the padded positions must exist)"
            )
        limit = full_attention_limit(block, rand)
        if options.max_pos <= limit:
            raise LongifyError(
                f"--max-pos {options.max_pos}: BigBird with --block-size {block} and --num-random-blocks {rand} "
                f"runs full attention up to {limit} tokens, so block-sparse attention would never run; give more "
                "positions or smaller blocks"
            )

    def check_source(
        self, config: PretrainedConfig, family: Family, options: Options, head_is_new: bool
    ) -> None:
        if config.pad_token_id is None:
            raise LongifyError(
                "config.json: pad_token_id is missing; BigBird pads inputs to whole blocks with it"
            )
        act = family.canonical_config(config).get("hidden_act", "gelu")
        head = family.head_act(config)
        if head != act and not head_is_new:
            raise LongifyError(
                f"--target bigbird: cannot be exact for this {family.model_type}: its MLM head applies {head} but its "
                f"hidden_act is {act!r}, and BigBird's head applies hidden_act"
            )

    def config(
        self, source: PretrainedConfig, family: Family, options: Options, tokenizer: PreTrainedTokenizerBase
    ) -> BigBirdConfig:
        block, rand = sizes(options)
        carried = {k: v for k, v in family.canonical_config(source).items() if k in CARRIED}
        sep = (
            tokenizer.sep_token_id
            if tokenizer.sep_token_id is not None
            else getattr(source, "sep_token_id", None)
        )
        return BigBirdConfig(
            **carried,
            sep_token_id=sep,
            max_position_embeddings=options.max_pos,
            attention_type=BLOCK_SPARSE,
            block_size=block,
            num_random_blocks=rand,
            use_bias=True,
            rescale_embeddings=False,
            architectures=["BigBirdForMaskedLM"],
        )

    def position_offset(self, config: PretrainedConfig) -> int:
        return 0

    def source_key(self, family: Family, key: str) -> str | None:
        if key.startswith("bert.pooler."):
            return None  # a MaskedLM source has no pooler
        if key.startswith("bert."):
            return family.native_key(key[len("bert.") :])  # the canonical encoder's key
        return family.native_key(BERT_HEAD[key])  # cls.predictions.* -> canonical lm_head.*

    def checks(self, config: PretrainedConfig, source_len: int) -> list[Check]:
        limit = full_attention_limit(config.block_size, config.num_random_blocks)
        return [Check(config, min(source_len, limit), True)]

    def comparing(self) -> AbstractContextManager[object]:
        return _quiet_big_bird()

    def prove_long(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Switch the model back to block-sparse attention (the comparison's short inputs left it full) and show
        that every layer runs it at the full length; a model that stays full is an error."""
        reset_block_sparse(model)
        length = int(batch["input_ids"].shape[1])
        calls = BlockSparseCalls(model)
        start = time.perf_counter()
        with calls, torch.no_grad():  # the encoder alone (the head was checked on short inputs)
            out = model.base_model(**batch)
        layers = model.config.num_hidden_layers
        if calls.count != layers or not torch.isfinite(out.last_hidden_state).all():
            raise LongifyError(
                f"--target bigbird: block-sparse attention ran in {calls.count} of {layers} layers at {length} "
                "tokens; the model stayed on full attention"
            )
        return {"length": length, "attention": BLOCK_SPARSE, "block_sparse_layers": calls.count,
                "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip

    def check_saved(self, config: dict[str, Any], where: str) -> None:
        if config.get("attention_type") != BLOCK_SPARSE:
            raise LongifyError(
                f"{where}: attention_type is {config.get('attention_type')!r}, expected {BLOCK_SPARSE!r}"
            )

    def record(self, config: PretrainedConfig, options: Options) -> dict[str, Any]:
        return {
            "attention": BLOCK_SPARSE,
            "block_size": config.block_size,
            "num_random_blocks": config.num_random_blocks,
            "full_attention_up_to": full_attention_limit(config.block_size, config.num_random_blocks),
        }

    def settled(self, options: Options) -> dict[str, Any]:
        block, rand = sizes(options)
        return {"block_size": block, "num_random_blocks": rand}

    def describe(self, config: PretrainedConfig) -> str:
        return "A BigBird (block-sparse attention)"

    def attention_text(self, config: PretrainedConfig) -> str:
        if config.attention_type != BLOCK_SPARSE:
            return f"full attention (attention_type {config.attention_type!r}) at every length"
        limit = full_attention_limit(config.block_size, config.num_random_blocks)
        return (
            f"full attention up to {limit} tokens, block-sparse above (blocks of {config.block_size}, "
            f"{config.num_random_blocks} random); HF's BigBird stays full in a process after any input of at most "
            f"{limit} tokens until set_attention_type('block_sparse')"
        )

    def card(self, record: dict[str, Any]) -> str:
        return f"""---
library_name: transformers
tags: [big_bird, longify, fill-mask]
---
# {Path(record["output"]).name}

A BigBird ({record["max_pos"]} positions, block-sparse attention: blocks of {record["block_size"]} tokens,
{record["num_random_blocks"]} random blocks) converted by longify from `{record["source"]}` ({record["family"]}),
with the source's tokenizer. Inputs of up to {record["full_attention_up_to"]} tokens run full attention.

- position embeddings: `{record["position_init"]}` from the source's {record["source_max_len"]} positions (BigBird has no padding offset)
- new tensors (not in the source): {", ".join(record["new_tensors"]) or "none"}
{verified_line(record)}
{head_line(record)}
{st_line(record)}
Load it with `AutoModelForMaskedLM.from_pretrained(...)`. It still needs long masked-LM pretraining
(`longify pretrain`) before the new positions and the sparse attention are useful.
Details: `conversion.json`.
"""

    def qa_extras(self, config: PretrainedConfig) -> QAExtras:
        return QAExtras(global_attention=False, pad_multiple=int(config.block_size), token_type_ids=True)

    def install_attention(self, model: PreTrainedModel, impl: str) -> PreTrainedModel:
        """Choose the attention per batch: HF's BigBird switches itself to full attention for good on the first
        input of at most ``full_attention_limit`` tokens (an evaluation or QA window); with this, every longer
        batch runs the attention the config names (block-sparse) again. Installed once per model."""
        base = model.base_model
        if not getattr(base, _PER_BATCH, False):
            base.register_forward_pre_hook(attention_for_length, with_kwargs=True)
            setattr(base, _PER_BATCH, True)
        block_sparse_in_fp32_under_autocast()
        return model


@contextmanager
def _quiet_big_bird() -> Iterator[None]:
    """HF's BigBird warns on every switch to full attention; on the comparison's short inputs that is the point."""
    hf_logger = logging.getLogger(modeling_big_bird.__name__)
    level = hf_logger.level
    hf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logger.setLevel(level)


_PER_BATCH = "_longify_attention_per_batch"


def attention_for_length(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A forward pre-hook of a ``BigBirdModel``: full attention on inputs of at most ``full_attention_limit``
    tokens (what HF's forward would switch to, without its warning), the config's attention on longer ones."""
    config = module.config
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is None:
        return
    long = ids.shape[1] > full_attention_limit(config.block_size, config.num_random_blocks)
    module.set_attention_type(config.attention_type if long else "original_full")


def block_sparse_in_fp32_under_autocast() -> None:
    """Let HF's block-sparse attention run under autocast (``--bf16``, ``--fp16``): as shipped (transformers 5)
    it fails there (``scatter(): Expected self.dtype to be equal to src.dtype``: float32 values scattered into
    half-precision attention probabilities). Under autocast it now runs in float32, as autocast itself does
    with softmax; the projections around it keep the autocast dtype. Without autocast nothing changes.
    Patched once, on the class (HF swaps the attention modules when the attention type changes)."""
    cls = BigBirdBlockSparseAttention
    if getattr(cls.forward, _FP32_PATCH, False):
        return
    original = cls.forward

    @functools.wraps(original)
    def forward(self: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        device = hidden_states.device.type
        if not torch.is_autocast_enabled(device):
            return original(self, hidden_states, *args, **kwargs)
        with torch.autocast(device, enabled=False):
            return original(self, hidden_states.float(), *args, **kwargs)

    setattr(forward, _FP32_PATCH, True)
    cls.forward = forward  # type: ignore[method-assign]


_FP32_PATCH = "_longify_fp32_under_autocast"


def reset_block_sparse(model: PreTrainedModel) -> None:
    """Put a BigBird back on the attention its config names (HF's forward leaves it full after a short input)."""
    model.base_model.set_attention_type(model.config.attention_type)


def is_block_sparse(model: PreTrainedModel) -> bool:
    """Every layer of ``model`` holds block-sparse attention."""
    layers = model.base_model.encoder.layer
    return all(isinstance(layer.attention.self, BigBirdBlockSparseAttention) for layer in layers)


class BlockSparseCalls:
    """Counts the block-sparse attention calls made inside ``with`` (one per layer per forward)."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.count = 0
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, BigBirdBlockSparseAttention):
            self.count += 1

    def __enter__(self) -> BlockSparseCalls:
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()
