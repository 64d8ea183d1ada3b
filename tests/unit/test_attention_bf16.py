"""The bf16 CPU fast path (``attention/bf16_band.py``) and batch > 1 without window copies.

Tolerance for bf16 (against HF under the same precision). HF and the fast path round at different places
(the fast path keeps the band scores' fp32 accumulation until one bf16 rounding, splits the global rows
differently, folds window gradients in fp32), so neither is "the" bf16 answer and a pointwise bound between
them would only measure bf16 noise. The oracle is fp32 HF: for every output and gradient,

    error(fast) <= 2 x error(HF) + 4u,   u = 2^-8 (bf16 unit roundoff),

each error being max |x - fp32 HF| over the tensor's scale (its max |value|, floored at 1e-3 of the largest
scale, for gradients that are zero in exact arithmetic, such as the key biases'). The fast path's error may be
twice HF's own plus a few roundings, never more; a missing or misplaced term (a global column, the dropout
scale, a window) errs by O(1), far above that.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from transformers import LongformerConfig, LongformerForQuestionAnswering, LongformerModel
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from helpers import longformer_batch
from longify.attention import FastLongformerSelfAttention, bf16_band, use_fast_attention
from longify.attention.band import block_mask
from longify.attention.dropout_band import BandDropout
from longify.attention.global_rows import global_positions

os.environ.setdefault("HF_HUB_OFFLINE", "1")
U = 2.0**-8  # bf16 unit roundoff
FLOOR = 1e-3


def tiny_config(window: int | list[int] = 8, layers: int = 2, dropout: float = 0.0) -> LongformerConfig:
    return LongformerConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        attention_window=window,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=dropout,
        pad_token_id=1,
    )


make_batch = longformer_batch


def results(model, inputs: dict, dtype: torch.dtype, autocast: bool) -> dict[str, torch.Tensor]:
    """Output, every parameter gradient and the gradient of the input embeddings, as fp32."""
    model.zero_grad(set_to_none=True)
    embeds = model.embeddings.word_embeddings(inputs["input_ids"]).detach().to(dtype).requires_grad_(True)
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(inputs_embeds=embeds, **rest).last_hidden_state
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out.float() * weights).sum().backward()
    found = {k: p.grad.float() for k, p in model.named_parameters() if p.grad is not None}
    return {**found, "inputs_embeds": embeds.grad.float(), "output": out.detach().float()}


def assert_within_hf_error(fast: dict, hf: dict, ref: dict) -> None:
    """The module docstring's bound, for every tensor of ``ref`` (fp32 HF)."""
    assert fast.keys() == hf.keys() == ref.keys()
    top = max(t.abs().max().item() for t in ref.values())
    for name, r in ref.items():
        scale = max(r.abs().max().item(), FLOOR * top)
        e_fast = (fast[name] - r).abs().max().item() / scale
        e_hf = (hf[name] - r).abs().max().item() / scale
        assert torch.isfinite(fast[name]).all(), name
        assert e_fast <= 2 * e_hf + 4 * U, f"{name}: fast {e_fast:.4f}, HF {e_hf:.4f} (relative to fp32 HF)"


CASES = {
    "padding_and_ragged_globals": ([40, 29, 17], 40, [[0], [0, 3, 11, 20], []]),
    "no_globals": ([40, 33], 40, [[], []]),
    "length_not_multiple": ([23, 19], 23, [[2, 7], [0]]),
    "global_at_row_end": ([32, 32], 32, [[31], [0, 31]]),
    "many_globals_direct_path": ([48, 40], 48, [list(range(0, 48, 4)), list(range(1, 12))]),
    "fully_padded_row": ([24, 0], 24, [[0], []]),
}


@pytest.mark.parametrize("mode", ["autocast", "bf16_weights"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_model_within_hf_error(case, mode):
    lengths, n, glob = CASES[case]
    torch.manual_seed(0)
    hf = LongformerModel(tiny_config(window=8 if case != "no_globals" else [4, 16])).eval()
    fast = use_fast_attention(copy.deepcopy(hf))
    inputs = make_batch(lengths, n, glob)
    ref = results(hf, inputs, torch.float32, autocast=False)
    if mode == "autocast":
        got_hf = results(hf, inputs, torch.float32, autocast=True)
        got_fast = results(fast, inputs, torch.float32, autocast=True)
    else:
        hf16, fast16 = copy.deepcopy(hf).bfloat16(), use_fast_attention(copy.deepcopy(hf).bfloat16())
        got_hf = results(hf16, inputs, torch.bfloat16, autocast=False)
        got_fast = results(fast16, inputs, torch.bfloat16, autocast=False)
    assert_within_hf_error(got_fast, got_hf, ref)


def layer_results(module, x: torch.Tensor, mask: torch.Tensor, autocast: bool) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = module(
            x,
            attention_mask=mask,
            is_index_masked=mask < 0,
            is_index_global_attn=mask > 0,
            is_global_attn=bool((mask > 0).any()),
        )[0]
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (out.float() * weights).sum().backward()
    grads = {k: p.grad.float() for k, p in module.named_parameters()}
    return {**grads, "hidden_states": x.grad.float(), "output": out.detach().float()}


@pytest.mark.parametrize("window", [4, 8, 16])
def test_bf16_layer_with_peaked_attention_within_hf_error(window):
    """One self-attention layer, scores of several units (peaked softmax, where bf16 rounding of the scores
    matters), padding and ragged global tokens: output and the gradients of the hidden states and of the
    q/k/v and global projections."""
    config = tiny_config(window=[window], layers=1)
    torch.manual_seed(3)
    hf = LongformerSelfAttention(config, layer_id=0).eval()
    with torch.no_grad():
        for name in ("query", "key", "query_global", "key_global"):
            getattr(hf, name).weight.normal_(0.0, 0.6)
    fast = FastLongformerSelfAttention.from_hf(copy.deepcopy(hf))
    n = 48  # HF's layer needs a multiple of 2w
    x = torch.randn(2, n, 32, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(2, n)
    mask[1, 37:] = -10000.0  # padding
    mask[0, [0, 9]] = 10000.0  # global tokens (HF's encoding: > 0)
    mask[1, 2] = 10000.0
    ref = layer_results(hf, x, mask, autocast=False)
    assert_within_hf_error(
        layer_results(fast, x, mask, autocast=True), layer_results(hf, x, mask, autocast=True), ref
    )


def _count_paths(monkeypatch) -> list[str]:
    from longify.attention import self_attention

    calls: list[str] = []
    for name, module, attr in (
        ("generic", self_attention, "band_attention"),
        ("flash", self_attention.flash_cpu, "band_flash_attention"),
        ("explicit", self_attention.dropout_band, "band_dropout_attention"),
        ("bf16", self_attention.bf16_band, "band_bf16_attention"),
    ):
        original = getattr(module, attr)
        monkeypatch.setattr(
            module, attr, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    return calls


def test_bf16_and_inference_take_the_copy_free_paths(monkeypatch):
    """No caller flag: autocast, bf16 weights, training with dropout and inference with batch > 1 all
    choose a copy-free path by themselves."""
    calls = _count_paths(monkeypatch)
    torch.manual_seed(0)
    model = use_fast_attention(LongformerModel(tiny_config(window=4, layers=1, dropout=0.2)))
    inputs = make_batch([20, 13, 9], 20, [[0], [], [3]])
    expected = [
        ("train", True, torch.float32, "bf16"),
        ("eval", True, torch.float32, "bf16"),
        ("eval", False, torch.bfloat16, "bf16"),
        ("eval", False, torch.float32, "flash"),
        ("train", False, torch.float32, "explicit"),
    ]
    for mode, autocast, dtype, path in expected:
        model.to(dtype).train(mode == "train")
        calls.clear()
        with torch.inference_mode(mode == "eval"), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            model(**inputs)
        assert calls == [path], (mode, autocast, dtype)


def test_batched_flash_uses_window_views_not_copies(monkeypatch):
    """fp32 batch > 1: every kernel call (forward and backward) gets key and value windows that are views of
    one padded buffer (the old code copied the windows of all sequences once per layer), and the result is
    HF's, in inference mode and in training."""
    from longify.attention import flash_cpu

    shared: list[bool] = []

    def spy(op, at: int):
        def call(*args, **kwargs):
            k, v = args[at], args[at + 1]
            shared.append(k.untyped_storage().data_ptr() == v.untyped_storage().data_ptr())
            return op(*args, **kwargs)

        return call

    monkeypatch.setattr(flash_cpu, "_flash", spy(flash_cpu._flash, 1))
    monkeypatch.setattr(flash_cpu, "_flash_backward", spy(flash_cpu._flash_backward, 2))
    torch.manual_seed(0)
    hf = LongformerModel(tiny_config(window=8)).eval()
    fast = use_fast_attention(copy.deepcopy(hf))
    inputs = make_batch([40, 29, 17], 40, [[0], [0, 3, 11], []])
    with torch.inference_mode():
        torch.testing.assert_close(
            fast(**inputs).last_hidden_state, hf(**inputs).last_hidden_state, atol=1e-5, rtol=0
        )
    assert shared and all(shared)
    shared.clear()
    got, ref = (results(m, inputs, torch.float32, autocast=False) for m in (fast, hf))
    for name in ref:  # sums over the batch: 1e-5 relative to each tensor's scale
        scale = max(1.0, ref[name].abs().max().item())
        torch.testing.assert_close(got[name], ref[name], atol=1e-5 * scale, rtol=0, msg=name)
    assert shared and all(shared)


def _kernel_inputs(n: int = 21, lengths=(21, 15), globals_=((0, 5), (2,)), w: int = 3, block: int = 4):
    """fp64 qkv (2, n, 3, 2, 4) and a block mask with ragged global columns and padding."""
    b, h, d = 2, 2, 4
    qkv = torch.randn(b, n, 3, h, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    key_ok = torch.zeros(b, n, dtype=torch.bool)
    is_global = torch.zeros(b, n, dtype=torch.bool)
    for i, (length, gl) in enumerate(zip(lengths, globals_, strict=True)):
        key_ok[i, :length] = True
        is_global[i, list(gl)] = True
    pos, valid = global_positions(is_global)
    if not is_global.any():
        pos = valid = None
    mask = block_mask(key_ok & ~is_global, ~key_ok, valid, w, block, qkv.dtype)
    return qkv, mask, pos, w, block


@pytest.mark.parametrize("chunk", [1, 2, 8])
@pytest.mark.parametrize("with_globals", [True, False])
def test_kernel_is_the_explicit_fp32_kernel_in_fp64(chunk, with_globals, monkeypatch):
    """In fp64 the bf16 kernel runs the same code at full precision: it is ``dropout_band``'s function
    (checked against HF elsewhere), forward and gradient, for any chunking of the query blocks."""
    monkeypatch.setattr(bf16_band, "CHUNK_BLOCKS", chunk)
    qkv, mask, pos, w, block = _kernel_inputs(globals_=((0, 5), (2,)) if with_globals else ((), ()))
    a = qkv.clone().requires_grad_(True)
    b = qkv.clone().requires_grad_(True)
    out_a = bf16_band.BandBF16.apply(a, mask, pos, w, block, 0.5, 0.0)
    out_b = BandDropout.apply(b, mask, pos, w, block, 0.5, 0.0)
    torch.testing.assert_close(out_a, out_b, atol=1e-12, rtol=0)
    weights = torch.randn(out_a.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0)


def test_kernel_backward_with_dropout_matches_finite_differences(monkeypatch):
    """With attention dropout the hand-written backward is the gradient for the mask drawn under a fixed
    seed (without dropout it is ``dropout_band``'s, above)."""
    monkeypatch.setattr(bf16_band, "CHUNK_BLOCKS", 2)
    qkv, mask, pos, w, block = _kernel_inputs(n=13, lengths=(13, 9), w=2)
    qkv.requires_grad_(True)

    def fn(x):
        torch.manual_seed(7)
        return bf16_band.BandBF16.apply(x, mask, pos, w, block, 0.5, 0.3)

    assert (fn(qkv) != bf16_band.BandBF16.apply(qkv, mask, pos, w, block, 0.5, 0.0)).any()
    assert torch.autograd.gradcheck(fn, (qkv,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_kernel_dropout_expectation_is_the_dropout_free_output():
    """E[output] over the masks is the dropout-free output (inverted dropout): 200 copies in one batch."""
    qkv, mask, pos, w, block = _kernel_inputs()
    ref = bf16_band.BandBF16.apply(qkv, mask, pos, w, block, 0.5, 0.0)
    copies = 200
    big = bf16_band.BandBF16.apply(
        qkv.repeat(copies, 1, 1, 1, 1),
        mask.repeat(copies, 1, 1, 1),
        pos.repeat(copies, 1),
        w,
        block,
        0.5,
        0.3,
    ).view(copies, *ref.shape)
    mean, err = big.mean(0), big.std(0) / copies**0.5
    assert ((mean - ref).abs() <= 5 * err + 1e-9).all()
    assert (big != ref).any()


def test_bf16_dropout_training_with_checkpointing_redraws_the_same_mask():
    fast = use_fast_attention(LongformerForQuestionAnswering(tiny_config(window=8, dropout=0.3)))
    fast.train()
    inputs = make_batch([40, 29], 40, [[0, 3], []])
    runs = []
    for checkpointing in (False, True):
        if checkpointing:
            fast.gradient_checkpointing_enable()
        fast.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(**inputs)
        (out.start_logits.float().mean() + out.end_logits.float().mean()).backward()
        runs.append((out.start_logits.detach(), {k: p.grad for k, p in fast.named_parameters()}))
    assert torch.isfinite(runs[0][0]).all()
    torch.testing.assert_close(runs[1][0], runs[0][0], atol=0, rtol=0)
    for name, grad in runs[0][1].items():
        if grad is not None:
            assert torch.isfinite(grad).all(), name
            torch.testing.assert_close(runs[1][1][name], grad, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_bf16_block_sizes(block_size):
    torch.manual_seed(0)
    hf = LongformerModel(tiny_config(window=8)).eval()
    fast = use_fast_attention(copy.deepcopy(hf), block_size=block_size)
    inputs = make_batch([45, 30], 45, [[0, 9], [4]])
    ref = results(hf, inputs, torch.float32, autocast=False)
    got_hf = results(hf, inputs, torch.float32, autocast=True)
    assert_within_hf_error(results(fast, inputs, torch.float32, autocast=True), got_hf, ref)
