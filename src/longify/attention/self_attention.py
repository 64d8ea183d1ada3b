"""Drop-in replacement for HF's ``LongformerSelfAttention``: same parameters, same function, faster.

Differences in *how*, not *what*: the query/key/value projections are one fused matmul; the band is
computed over query blocks of ``block`` tokens (no overlapping 2w chunks, no diagonal shuffling; on CPU in
fp32 without dropout by the flash kernel through ``flash_cpu``, which copies no key windows, with attention
dropout in training through ``dropout_band`` (explicit probabilities, no window copies either), in bf16
(autocast or bf16 weights, with or without dropout) through ``bf16_band`` (bf16 matmuls, fp32 softmax, no
window copies), elsewhere through ``band``); the global rows are computed once, from the hidden states, without projecting
every key through ``key_global`` / ``value_global`` (``global_rows``). ``output_attentions=True`` falls back
to HF's forward, because only HF's layout of the probabilities is defined."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longify.attention import bf16_band, dropout_band, flash_cpu
from longify.attention.band import band_attention, block_mask
from longify.attention.global_rows import global_positions, global_rows

PROJECTIONS = ("query", "key", "value", "query_global", "key_global", "value_global")
DEFAULT_BLOCK = 128
# Which kernel computes the band. "auto": the copy-free CPU paths where they apply (``bf16_band`` for bf16;
# in fp32 ``dropout_band`` for attention dropout in training, ``flash_cpu`` otherwise), else ``band``.
# "generic": always ``band`` (SDPA over copied windows; what CUDA and fp16 autocast get). "explicit_probs":
# ``bf16_band`` / ``dropout_band`` wherever they apply, even without dropout. All three compute the same
# function.
KERNELS = ("auto", "generic", "explicit_probs")
DEFAULT_KERNEL = "auto"


def check_kernel(kernel: str) -> str:
    """``kernel`` if it is one of :data:`KERNELS`, else ValueError."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
    return kernel


def choose_block(w: int, n: int, block: int | None) -> int:
    """Query block size: the one-sided window, capped at DEFAULT_BLOCK (the CPU optimum at w = 256)."""
    size = block if block is not None else min(DEFAULT_BLOCK, max(w, 16))
    return max(1, min(size, n))


class FastLongformerSelfAttention(LongformerSelfAttention):
    """Exact Longformer sliding-window + global self-attention (see module docstring).

    ``block_size``: query block size (None: :func:`choose_block`'s default); ``kernel``: one of
    :data:`KERNELS`. Both are per instance (set again by ``use_fast_attention``).
    """

    def __init__(
        self, config: object, layer_id: int, block_size: int | None = None, kernel: str = DEFAULT_KERNEL
    ) -> None:
        super().__init__(config, layer_id)
        self.block_size = block_size
        self.kernel = check_kernel(kernel)

    @classmethod
    def from_hf(
        cls, hf: LongformerSelfAttention, block_size: int | None = None, kernel: str = DEFAULT_KERNEL
    ) -> FastLongformerSelfAttention:
        """A module sharing ``hf``'s parameters (same names, so state_dicts are unchanged)."""
        with torch.device("meta"):
            new = cls(hf.config, hf.layer_id, block_size, kernel)
        for name in PROJECTIONS:
            setattr(new, name, getattr(hf, name))
        new.train(hf.training)
        return new

    def to_hf(self) -> LongformerSelfAttention:
        """HF's module sharing this module's parameters."""
        with torch.device("meta"):
            hf = LongformerSelfAttention(self.config, self.layer_id)
        for name in PROJECTIONS:
            setattr(hf, name, getattr(self, name))
        hf.train(self.training)
        return hf

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        is_index_masked: Tensor | None = None,
        is_index_global_attn: Tensor | None = None,
        is_global_attn: bool | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, ...]:
        """hidden_states (b, n, e); attention_mask (b, n): < 0 padding, 0 local, > 0 global (HF's encoding)."""
        if attention_mask is None:
            attention_mask = hidden_states.new_zeros(hidden_states.shape[:2])
        if is_index_masked is None:
            is_index_masked = attention_mask < 0
        if is_index_global_attn is None:
            is_index_global_attn = attention_mask > 0
        if is_global_attn is None:
            is_global_attn = bool(is_index_global_attn.any().item())
        if output_attentions:
            return super().forward(
                hidden_states,
                attention_mask=attention_mask,
                is_index_masked=is_index_masked,
                is_index_global_attn=is_index_global_attn,
                is_global_attn=is_global_attn,
                output_attentions=True,
            )
        return (
            self._attend(
                hidden_states, attention_mask, is_index_masked, is_index_global_attn, is_global_attn
            ),
        )

    def project_qkv(self, x: Tensor) -> Tensor:
        """q, k and v of ``x`` (b, n, e) in one ``linear`` against the concatenated weights: (b, n, 3 e)."""
        weight = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        bias = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        return F.linear(x, weight, bias)

    def _attend(
        self, x: Tensor, attention_mask: Tensor, masked: Tensor, is_global: Tensor, any_global: bool
    ) -> Tensor:
        b, n, _ = x.shape
        h, d, w = self.num_heads, self.head_dim, self.one_sided_attn_window_size
        qkv = self.project_qkv(x).view(b, n, 3, h, d)
        block = choose_block(w, n, self.block_size)
        dropout = self.dropout if self.training else 0.0

        pos = valid = None
        if any_global:
            pos, valid = global_positions(is_global)
        copy_free = self.kernel != "generic"
        explicit = copy_free and (dropout > 0 or self.kernel == "explicit_probs")
        if copy_free and bf16_band.usable(qkv, dropout):
            mask = block_mask(attention_mask == 0, masked, valid, w, block, qkv.dtype)
            out = bf16_band.band_bf16_attention(qkv, mask, w, block, pos, dropout, 1.0 / math.sqrt(d))
        elif explicit and dropout_band.usable(qkv, dropout):
            mask = block_mask(attention_mask == 0, masked, valid, w, block, qkv.dtype)
            out = dropout_band.band_dropout_attention(qkv, mask, w, block, pos, dropout, 1.0 / math.sqrt(d))
        elif copy_free and flash_cpu.usable(qkv, dropout):
            mask = block_mask(attention_mask == 0, masked, None, w, block, qkv.dtype)
            global_mask = None
            if valid is not None:
                global_mask = torch.zeros(valid.shape, dtype=qkv.dtype, device=qkv.device)
                global_mask = global_mask.masked_fill(~valid, float("-inf"))[:, None, None, None, :]
            out = flash_cpu.band_flash_attention(qkv, mask, global_mask, pos, w, block, 1.0 / math.sqrt(d))
        else:
            mask = block_mask(attention_mask == 0, masked, valid, w, block, qkv.dtype)
            out = band_attention(qkv, mask, w, block, pos, dropout, 1.0 / math.sqrt(d))
        if bool(masked.any()):
            out = out.masked_fill(masked[:, :, None], 0.0)
        if not any_global:
            return out
        g_out = global_rows(
            x, pos, valid, masked, self.query_global, self.key_global, self.value_global, h, dropout
        )
        rows, slots = valid.nonzero(as_tuple=True)
        return out.index_put((rows, pos[rows, slots]), g_out[rows, slots].to(out.dtype))
