"""Install or remove the fast attention in a loaded Longformer (any head: MLM, QA, base model).

Only the ``attention.self`` modules are swapped; they share the original parameters under the same names,
so ``state_dict`` / ``save_pretrained`` produce a standard Longformer checkpoint either way.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longify.attention.model_mask import enable_row_mask, release_row_mask
from longify.attention.self_attention import DEFAULT_KERNEL, FastLongformerSelfAttention, check_kernel


def _swap(model: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = convert(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count


def use_fast_attention(
    model: nn.Module, block_size: int | None = None, kernel: str = DEFAULT_KERNEL
) -> nn.Module:
    """Replace every HF ``LongformerSelfAttention`` in ``model`` by the fast exact one; returns ``model``.

    ``block_size`` and ``kernel`` (see ``self_attention.KERNELS``) are set on every fast module, also on
    those already installed. The model is registered for the row-mask patch (``model_mask``), which is
    undone when it is reverted or garbage-collected.
    """
    check_kernel(kernel)

    def convert(child: nn.Module) -> nn.Module | None:
        if isinstance(child, FastLongformerSelfAttention):
            child.block_size, child.kernel = block_size, kernel
            return None
        if isinstance(child, LongformerSelfAttention):
            return FastLongformerSelfAttention.from_hf(child, block_size, kernel)
        return None

    if any(isinstance(m, LongformerSelfAttention) for m in model.modules()):
        enable_row_mask(model)  # first: refuses (changing nothing) if another library patched the mask
    _swap(model, convert)
    return model


def use_hf_attention(model: nn.Module) -> nn.Module:
    """Undo :func:`use_fast_attention`: put HF's ``LongformerSelfAttention`` back; returns ``model``."""

    def convert(child: nn.Module) -> nn.Module | None:
        return child.to_hf() if isinstance(child, FastLongformerSelfAttention) else None

    _swap(model, convert)
    release_row_mask(uses_fast_attention)
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
