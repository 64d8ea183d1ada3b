"""Step 2 of a conversion: the Longformer's weights from the plan (positions extended, local q/k/v copied,
global q/k/v copied or random), every source weight used and every target weight filled."""

from __future__ import annotations

import logging

import torch
from transformers import LongformerConfig, LongformerForMaskedLM, PreTrainedModel

from longify.convert.families import Family
from longify.convert.plan import Plan
from longify.convert.positions import extend_positions
from longify.errors import LongifyError

logger = logging.getLogger(__name__)

_ATTENTION_KEYS = ("query", "key", "value")
POSITIONS_KEY = "longformer.embeddings.position_embeddings.weight"


def checked_position_init(plan: Plan) -> str:
    """The position init the weights are built and verified with: ``interpolate`` moves the source rows, so
    the mapping is verified with the copied table and the interpolated one swapped in afterwards."""
    return "copy" if plan.options.position_init == "interpolate" else plan.options.position_init


def build(plan: Plan) -> dict[str, torch.Tensor]:
    """The converted state dict, built with ``checked_position_init``."""
    logger.info(
        "building %s -> longformer with %d positions, windows %s",
        plan.family.model_type,
        plan.options.max_pos,
        sorted(set(plan.windows)),
    )
    with torch.device("meta"):
        target_keys = {k: v.shape for k, v in LongformerForMaskedLM(plan.long).state_dict().items()}
    return build_state_dict(
        plan.source,
        plan.family,
        target_keys,
        src_offset=plan.src_offset,
        dst_offset=plan.dst_offset,
        max_pos=plan.options.max_pos,
        position_init=checked_position_init(plan),
        global_init=plan.options.global_init,
        init_std=plan.config.initializer_range,
        seed=plan.options.seed,
    )


def final_positions(plan: Plan, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap in the requested position table when it differs from the verified one (``interpolate``)."""
    if checked_position_init(plan) == plan.options.position_init:
        return state
    table = plan.source.state_dict()[plan.family.source_key(POSITIONS_KEY)].detach().float()
    state[POSITIONS_KEY] = extend_positions(
        table,
        src_offset=plan.src_offset,
        dst_offset=plan.dst_offset,
        new_len=plan.options.max_pos,
        method=plan.options.position_init,
        init_std=plan.config.initializer_range,
        seed=plan.options.seed,
    )
    logger.info(
        "position table: %s (verified with the copied table, same weights otherwise)",
        plan.options.position_init,
    )
    return state


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
