"""The ``full`` target: the source's own HF class (RoBERTa, XLM-R, BERT, CamemBERT, data2vec-text) with its
position table extended to ``max_pos``; plain full attention through PyTorch's SDPA (BGE-M3's way).

Every tensor is the source's (the position table extended by ``--position-init``), so the result is a
standard checkpoint of the source's class: AutoModel, sentence-transformers and every serving stack that
loads the source load it. Verified equal to the source on inputs of the source's length, and run at
``max_pos`` tokens.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

from longify.errors import LongifyError
from longify.families import Family
from longify.families import position_offset as family_offset
from longify.targets.base import Options, Target
from longify.targets.longformer import head_line, st_line, verified_line

SDPA = "sdpa"


def refuse_longformer_options(options: Options) -> None:
    """``--attention-window`` and ``--global-init random`` describe Longformer's attention only."""
    if options.attention_window is not None:
        raise LongifyError(f"--attention-window: Longformer's; --target {options.target} has no window")
    if options.global_init != "copy":
        raise LongifyError(
            f"--global-init: Longformer's; --target {options.target} has no global projections"
        )


class Full(Target):
    name = "full"
    summary = "the source's own class, positions extended; full attention (SDPA)"
    label = "full-attention model"

    def check_options(self, options: Options) -> None:
        super().check_options(options)
        refuse_longformer_options(options)

    def model_class_of(self, config: PretrainedConfig) -> type[PreTrainedModel]:
        try:
            return MODEL_FOR_MASKED_LM_MAPPING[type(config)]
        except KeyError:
            raise LongifyError(
                f"config.json: no masked-LM class for model_type {config.model_type!r}"
            ) from None

    def config(
        self, source: PretrainedConfig, family: Family, options: Options, tokenizer: PreTrainedTokenizerBase
    ) -> PretrainedConfig:
        config = copy.deepcopy(source)
        config.max_position_embeddings = options.max_pos + family.position_offset(source)
        if family.lengthen is not None:  # what else raising the length means for this family's config
            family.lengthen(config, source)
        config.architectures = [self.model_class_of(config).__name__]
        if getattr(self.model_class_of(config), "_supports_sdpa", False):
            config._attn_implementation = SDPA  # a load-time choice, not saved: recorded in conversion.json
        return config

    def position_offset(self, config: PretrainedConfig) -> int:
        return family_offset(config)

    def positions_key_of(self, family: Family) -> str:
        return family.prefix + "embeddings.position_embeddings.weight"

    def source_key(self, family: Family, key: str) -> str | None:
        return key

    def prove_long(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        start = time.perf_counter()
        with (
            torch.no_grad()
        ):  # the encoder alone: its head, checked on short inputs, would add max_pos x vocab
            out = model.base_model(**batch)
        if not torch.isfinite(out.last_hidden_state).all():
            raise LongifyError(
                f"--target full: the output at {batch['input_ids'].shape[1]} tokens is not finite"
            )
        return {
            "length": int(batch["input_ids"].shape[1]),
            "attention": model.config._attn_implementation,
            "seconds": round(time.perf_counter() - start, 3),
        }

    def attention_of(self, model: PreTrainedModel) -> str:
        return f"{super().attention_of(model)} ({model.config._attn_implementation})"

    def record(self, config: PretrainedConfig, options: Options) -> dict[str, Any]:
        return {"attention": "full", "attn_implementation": getattr(config, "_attn_implementation", None)}

    def describe(self, config: PretrainedConfig) -> str:
        return f"A {config.model_type} with {self.usable_positions(config)} positions (full attention)"

    def card(self, record: dict[str, Any]) -> str:
        return f"""---
library_name: transformers
tags: [{record["family"]}, longify, fill-mask, long-context]
---
# {Path(record["output"]).name}

`{record["target_class"]}` from `{record["source"]}` with its position table extended to {record["max_pos"]}
positions by longify: a standard checkpoint of the source's class, full attention (load it with
`attn_implementation="{SDPA}"`, the default where the class supports it, for PyTorch's memory-efficient kernels).

- position embeddings: `{record["position_init"]}` from the source's {record["source_max_len"]} positions
{verified_line(record)}
{head_line(record)}
{st_line(record)}
It still needs long masked-LM pretraining (`longify pretrain`) before the new positions are useful.
Details: `conversion.json`.
"""
