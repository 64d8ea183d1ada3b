"""Install or remove the fast attention in a loaded Longformer (any head: MLM, QA, base model).

Only the ``attention.self`` modules are swapped; they share the original parameters under the same names,
so ``state_dict`` / ``save_pretrained`` produce a standard Longformer checkpoint either way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longify.attention.model_mask import disable_row_mask, enable_row_mask
from longify.attention.self_attention import FastLongformerSelfAttention


def _swap(model: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = convert(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count


def use_fast_attention(model: nn.Module, block_size: int | None = None) -> nn.Module:
    """Replace every HF ``LongformerSelfAttention`` in ``model`` by the fast exact one; returns ``model``."""

    def convert(child: nn.Module) -> nn.Module | None:
        if isinstance(child, FastLongformerSelfAttention):
            child.block_size = block_size
            return None
        if isinstance(child, LongformerSelfAttention):
            return FastLongformerSelfAttention.from_hf(child, block_size)
        return None

    if _swap(model, convert) or uses_fast_attention(model):
        _for_configs(model, enable_row_mask)
    return model


def _for_configs(model: nn.Module, action: Callable[[object], None]) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "model_type", None) == "longformer":
            action(config)


def use_hf_attention(model: nn.Module) -> nn.Module:
    """Undo :func:`use_fast_attention`: put HF's ``LongformerSelfAttention`` back; returns ``model``."""

    def convert(child: nn.Module) -> nn.Module | None:
        return child.to_hf() if isinstance(child, FastLongformerSelfAttention) else None

    _swap(model, convert)
    _for_configs(model, disable_row_mask)
    return model


def uses_fast_attention(model: nn.Module) -> bool:
    """True when ``model`` has at least one fast attention module installed."""
    return any(isinstance(m, FastLongformerSelfAttention) for m in model.modules())


ATTENTION_IMPLS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "fast": use_fast_attention,
    "hf": use_hf_attention,
}
DEFAULT_ATTENTION = "fast"


def set_attention(model: nn.Module, impl: str = DEFAULT_ATTENTION) -> nn.Module:
    """Apply the attention implementation named ``impl`` (``fast`` or ``hf``, the ``--attention`` flag)."""
    try:
        return ATTENTION_IMPLS[impl](model)
    except KeyError:
        raise ValueError(f"--attention: expected one of {sorted(ATTENTION_IMPLS)}, got {impl!r}") from None


def check_attention_flag(impl: str) -> str:
    """Validate an ``--attention`` value for the argument dataclasses (one-line user error)."""
    from longify.errors import LongifyError

    if impl not in ATTENTION_IMPLS:
        raise LongifyError(f"--attention: expected one of {', '.join(sorted(ATTENTION_IMPLS))}, got {impl!r}")
    return impl
