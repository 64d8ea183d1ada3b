"""The floor of a Longformer step: the same model with the attention itself replaced by a pass-through.

``use_passthrough_attention(model)`` keeps everything but the attention: embeddings, the fused q/k/v
projection, the output projection, the feed-forward layers, the layer norms, the QA or MLM head. Each
self-attention returns its value projection unchanged (no scores, no softmax, no global rows). No attention
kernel can make a step faster than this, so ``HF time / floor time`` bounds the ratio any fast attention
can reach against HF on the same machine, in the same run. It computes nothing meaningful: benchmarks only.
"""

from __future__ import annotations

from torch import Tensor, nn

from longify.attention import FastLongformerSelfAttention, use_fast_attention


class PassThroughSelfAttention(FastLongformerSelfAttention):
    """q/k/v projected as the fast path does (``project_qkv``); the values are the output."""

    def _attend(
        self, x: Tensor, attention_mask: Tensor, masked: Tensor, is_global: Tensor, any_global: bool
    ) -> Tensor:
        b, n, e = x.shape
        return self.project_qkv(x).view(b, n, 3, e)[:, :, 2]


def use_passthrough_attention(model: nn.Module) -> nn.Module:
    """Install the pass-through in every self-attention of ``model`` (undo with ``use_real_fast``)."""
    use_fast_attention(model)
    for module in model.modules():
        if type(module) is FastLongformerSelfAttention:
            module.__class__ = PassThroughSelfAttention
    return model


def use_real_fast(model: nn.Module) -> nn.Module:
    """The fast attention again where the pass-through was installed; returns ``model``."""
    for module in model.modules():
        if type(module) is PassThroughSelfAttention:
            module.__class__ = FastLongformerSelfAttention
    return use_fast_attention(model)
