"""Fast exact Longformer attention (sliding window + global), installed into a loaded HF Longformer."""

from longify.attention.install import (
    ATTENTION_IMPLS,
    DEFAULT_ATTENTION,
    check_attention_flag,
    set_attention,
    use_fast_attention,
    use_hf_attention,
    uses_fast_attention,
)
from longify.attention.self_attention import KERNELS, FastLongformerSelfAttention

__all__ = [
    "ATTENTION_IMPLS",
    "DEFAULT_ATTENTION",
    "KERNELS",
    "FastLongformerSelfAttention",
    "check_attention_flag",
    "set_attention",
    "use_fast_attention",
    "use_hf_attention",
    "uses_fast_attention",
]
