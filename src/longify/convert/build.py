"""Step 2 of a conversion: the target's weights from the plan (``Target.weights``: positions extended, every
source weight used and every target weight filled; the new ones named)."""

from __future__ import annotations

import logging

import torch
from transformers import PretrainedConfig, PreTrainedModel

from longify.convert.plan import Plan
from longify.targets import DEFAULT_TARGET, get_target
from longify.targets.base import Target, Weights
from longify.targets.base import materialize as materialize_as
from longify.targets.longformer import POSITIONS_KEY, build_state_dict  # noqa: F401  (re-exported)
from longify.targets.positions import extend_positions

logger = logging.getLogger(__name__)


def checked_position_init(plan: Plan) -> str:
    """The position init the weights are built and verified with: ``interpolate`` moves the source rows, so
    the mapping is verified with the copied table and the interpolated one swapped in afterwards."""
    return "copy" if plan.options.position_init == "interpolate" else plan.options.position_init


def build_weights(plan: Plan) -> Weights:
    """The converted state dict (built with ``checked_position_init``) and the keys of its new tensors."""
    logger.info(
        "building %s -> %s with %d positions%s",
        plan.family.model_type,
        plan.target.name,
        plan.options.max_pos,
        f", windows {sorted(set(plan.windows))}" if plan.windows else "",
    )
    return plan.target.weights(
        plan.source,
        plan.family,
        plan.long,
        plan.options,
        checked_position_init(plan),
        extend=extend_positions,
    )


def build(plan: Plan) -> dict[str, torch.Tensor]:
    """The converted state dict, built with ``checked_position_init``."""
    return build_weights(plan).state


def final_positions(plan: Plan, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap in the requested position table when it differs from the verified one (``interpolate``)."""
    if checked_position_init(plan) == plan.options.position_init:
        return state
    key = plan.target.positions_key_of(plan.family)
    if key not in state:
        return state  # no absolute table (DeBERTa-v2 without position_biased_input): nothing to extend
    source_key = plan.target.source_key(plan.family, key)
    table = plan.source.state_dict()[source_key].detach().float()
    state[key] = extend_positions(
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


def materialize(
    config: PretrainedConfig, state: dict[str, torch.Tensor], target: Target | None = None
) -> PreTrainedModel:
    """A model of ``target``'s class (default: Longformer) holding exactly ``state``."""
    target = target or get_target(DEFAULT_TARGET)
    return materialize_as(target.model_class_of(config), config, state)
