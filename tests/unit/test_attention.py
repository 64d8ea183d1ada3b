"""Fast attention must be HF's LongformerSelfAttention, output and gradients, in every masking situation."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from transformers import (
    LongformerConfig,
    LongformerForMaskedLM,
    LongformerForQuestionAnswering,
    LongformerModel,
)
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from helpers import longformer_batch
from longify.attention import (
    FastLongformerSelfAttention,
    set_attention,
    use_fast_attention,
    use_hf_attention,
    uses_fast_attention,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOL = 1e-5


def tiny_config(window: int | list[int] = 8, layers: int = 2, heads: int = 4, dropout: float = 0.0):
    return LongformerConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=64,
        attention_window=window,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=dropout,
        pad_token_id=1,
    )


def pair(
    config: LongformerConfig,
    cls=LongformerModel,
    block_size: int | None = None,
    seed: int = 0,
    kernel: str = "auto",
):
    torch.manual_seed(seed)
    hf = cls(config).eval()
    fast = use_fast_attention(copy.deepcopy(hf), block_size=block_size, kernel=kernel)
    return hf, fast


batch = longformer_batch


def run(model, inputs, seed: int = 2):
    model.zero_grad(set_to_none=True)
    out = model(**inputs).last_hidden_state
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * weights).mean().backward()  # gradients O(1), so 1e-5 is a real bound
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in model.named_parameters()}
    return out.detach(), grads


def assert_same(hf, fast, inputs, tol: float = TOL):
    out_hf, g_hf = run(hf, inputs)
    out_fast, g_fast = run(fast, inputs)
    assert torch.isfinite(out_fast).all()
    torch.testing.assert_close(out_fast, out_hf, atol=tol, rtol=0)
    assert g_hf.keys() == g_fast.keys()
    for name in g_hf:
        torch.testing.assert_close(g_fast[name], g_hf[name], atol=tol, rtol=0, msg=name)


CASES = {
    "padding_and_ragged_globals": ([40, 29, 17], 40, [[0], [0, 3, 11, 20], []]),
    "no_globals": ([40, 33], 40, [[], []]),
    "one_global_each": ([37, 37], 37, [[0], [5]]),
    "length_not_multiple": ([23, 19], 23, [[2, 7], [0]]),
    "global_in_padding_free_row_end": ([32, 32], 32, [[31], [0, 31]]),
    "many_globals_direct_path": ([48, 40], 48, [list(range(0, 48, 4)), list(range(1, 12))]),
}


PATHS = {"cpu_flash": "auto", "generic": "generic", "explicit_probs": "explicit_probs"}


@pytest.fixture(params=sorted(PATHS))
def path(request):
    """The kernel to install: the copy-free CPU flash path, the generic (CUDA / autocast) path and the CPU
    dropout path (explicit probabilities, forced here without dropout)."""
    return PATHS[request.param]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_hf_output_and_grads(case, path):
    lengths, n, glob = CASES[case]
    hf, fast = pair(tiny_config(window=8), kernel=path)
    assert_same(hf, fast, batch(lengths, n, glob))


@pytest.mark.parametrize("block_size", [1, 3, 5, 16, 64])
def test_block_sizes(block_size, path):
    hf, fast = pair(tiny_config(window=8), block_size=block_size, kernel=path)
    assert_same(hf, fast, batch([45, 30], 45, [[0, 9], [4]]))


def test_per_layer_windows_and_train_mode_without_dropout(path):
    hf, fast = pair(tiny_config(window=[4, 8, 16], layers=3), kernel=path)
    hf.train()
    fast.train()
    assert_same(hf, fast, batch([50, 21], 50, [[0, 1], []]))


def test_fully_masked_row_is_finite_and_matches(path):
    hf, fast = pair(tiny_config(window=4), kernel=path)
    inputs = batch([24, 0], 24, [[0], []])
    out, grads = run(fast, inputs)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert_same(hf, fast, inputs)


@pytest.mark.parametrize("kernel", ["auto", "generic"], ids=["cpu_dropout", "generic"])
def test_dropout_train_mode_is_finite_and_shaped(kernel):
    config = tiny_config(window=8, dropout=0.3)
    hf, fast = pair(config, kernel=kernel)
    fast.train()
    inputs = batch([40, 31, 0], 40, [[0, 5], [], []])  # the last row fully masked
    out, grads = run(fast, inputs)
    assert out.shape == (3, 40, 32)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    fast.eval()
    assert_same(hf, fast, inputs)


def test_dropout_gradient_checkpointing_redraws_the_same_mask():
    _, fast = pair(tiny_config(window=8, dropout=0.3), cls=LongformerForQuestionAnswering)
    fast.train()
    inputs = batch([40, 29], 40, [[0, 3], []])
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            getattr(fast, "activation_checkpointing_enable", fast.gradient_checkpointing_enable)()
        fast.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        out = fast(**inputs)
        (out.start_logits.mean() + out.end_logits.mean()).backward()
        results.append((out.start_logits.detach(), {k: p.grad for k, p in fast.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], atol=TOL, rtol=0)
    for name, grad in results[0][1].items():
        if grad is not None:
            torch.testing.assert_close(results[1][1][name], grad, atol=TOL, rtol=0, msg=name)


def _band_inputs(b=2, n=21, h=2, d=4, w=3, block=4, globals_=((0, 5), (2,)), lengths=(21, 15), dtype=None):
    """qkv and the block mask of a small problem (ragged global tokens, padding) for BandDropout."""
    from longify.attention.band import block_mask
    from longify.attention.global_rows import global_positions

    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(b, n, 3, h, d, generator=g, dtype=dtype or torch.float32)
    key_ok = torch.zeros(b, n, dtype=torch.bool)
    is_global = torch.zeros(b, n, dtype=torch.bool)
    for i, (length, gl) in enumerate(zip(lengths, globals_, strict=True)):
        key_ok[i, :length] = True
        is_global[i, list(gl)] = True
    pos, valid = global_positions(is_global)
    mask = block_mask(key_ok & ~is_global, ~key_ok, valid, w, block, qkv.dtype)
    return qkv, mask, pos, w, block


def test_dropout_mask_fraction():
    from longify.attention.dropout_band import draw_keep, keep_threshold

    out = torch.empty(1000, 1001)
    bits = torch.empty(out.numel() // 2 + 1, dtype=torch.int64)
    for p in (0.0, 0.1, 0.5):
        keep = draw_keep(bits, keep_threshold(p), out)
        assert set(keep.unique().tolist()) <= {0.0, 1.0}
        assert abs((1 - keep.mean().item()) - p) < 3e-3  # ~10 standard deviations at 1e6 draws
    assert keep_threshold(0.0) == -(2**31)


def test_dropout_expected_output_is_dropout_free_output():
    """E[output] over the dropout masks is the dropout-free output (HF's inverted dropout): average over
    200 independent copies of the same problem in one batch."""
    from longify.attention.dropout_band import BandDropout

    qkv, mask, pos, w, block = _band_inputs()
    ref = BandDropout.apply(qkv, mask, pos, w, block, 0.5, 0.0)
    copies = 200
    big = BandDropout.apply(
        qkv.repeat(copies, 1, 1, 1, 1),
        mask.repeat(copies, 1, 1, 1),
        pos.repeat(copies, 1),
        w,
        block,
        0.5,
        0.3,
    ).view(copies, *ref.shape)
    assert torch.isfinite(big).all()
    mean, err = big.mean(0), big.std(0) / copies**0.5
    assert ((mean - ref).abs() <= 5 * err + 1e-5).all()
    assert (big != ref).any()  # dropout did something


def test_dropout_backward_matches_finite_differences():
    """With the mask fixed (same RNG seed on every call), the hand-written backward is the gradient."""
    from longify.attention.dropout_band import BandDropout

    qkv, mask, pos, w, block = _band_inputs(n=13, d=2, w=2, lengths=(13, 9), dtype=torch.float64)
    qkv.requires_grad_(True)

    def fn(x):
        torch.manual_seed(7)
        return BandDropout.apply(x, mask, pos, w, block, 0.5, 0.3)

    assert (fn(qkv) != BandDropout.apply(qkv, mask, pos, w, block, 0.5, 0.0)).any()
    assert torch.autograd.gradcheck(fn, (qkv,), eps=1e-6, atol=1e-5)


def test_output_attentions_falls_back_to_hf():
    hf, fast = pair(tiny_config(window=8))
    inputs = batch([30, 20], 30, [[0, 4], [1]])
    with torch.no_grad():
        a = hf(**inputs, output_attentions=True)
        b = fast(**inputs, output_attentions=True)
    for x, y in zip(a.attentions + a.global_attentions, b.attentions + b.global_attentions, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("cls", [LongformerForMaskedLM, LongformerForQuestionAnswering])
def test_heads_install_and_match(cls):
    hf, fast = pair(tiny_config(window=4), cls=cls)
    assert uses_fast_attention(fast) and not uses_fast_attention(hf)
    inputs = batch([20, 13], 20, [[0, 1, 2], [0]])
    with torch.no_grad():
        for a, b in zip(hf(**inputs).values(), fast(**inputs).values(), strict=True):
            torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_parameters_shared_and_reversible():
    hf, _ = pair(tiny_config())
    before = {k: v.data_ptr() for k, v in hf.state_dict().items()}
    use_fast_attention(hf)
    modules = [m for m in hf.modules() if isinstance(m, LongformerSelfAttention)]
    assert len(modules) == 2 and all(isinstance(m, FastLongformerSelfAttention) for m in modules)
    assert {k: v.data_ptr() for k, v in hf.state_dict().items()} == before
    use_hf_attention(hf)
    assert not uses_fast_attention(hf)
    assert all(
        type(m) is LongformerSelfAttention for m in hf.modules() if isinstance(m, LongformerSelfAttention)
    )
    assert {k: v.data_ptr() for k, v in hf.state_dict().items()} == before
    set_attention(hf, "fast")
    assert uses_fast_attention(hf)
    with pytest.raises(ValueError, match="--attention"):
        set_attention(hf, "flash")


def test_saved_checkpoint_is_standard(tmp_path):
    hf, fast = pair(tiny_config(window=4), cls=LongformerForMaskedLM)
    fast.save_pretrained(tmp_path)
    loaded = LongformerForMaskedLM.from_pretrained(tmp_path).eval()
    assert not uses_fast_attention(loaded)
    ref, got = hf.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=0, rtol=0)


def test_bf16_autocast_close_to_fp32():
    hf, fast = pair(tiny_config(window=8))
    inputs = batch([40, 30], 40, [[0, 3], []])
    with torch.no_grad():
        ref = hf(**inputs).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fast(**inputs).last_hidden_state
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.05)


def test_row_mask_equals_hf_full_mask():
    from transformers.models.longformer import modeling_longformer as ml

    from longify.attention import model_mask

    _, fast = pair(tiny_config(window=4))
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    embeds = torch.zeros(3, 5, 32)
    kwargs = {"inputs_embeds": embeds, "attention_mask": mask, "allow_is_bidirectional_skip": False}
    assert ml.create_bidirectional_mask is model_mask._row_mask
    full = model_mask._ORIGINAL(config=fast.config, **kwargs)
    row = ml.create_bidirectional_mask(config=fast.config, **kwargs)
    assert row.shape == full.shape and row.dtype == full.dtype
    torch.testing.assert_close(row, full, atol=0, rtol=0)
    assert row.untyped_storage().nbytes() == 3 * 5 * 4  # one row per sequence, not n x n


@pytest.mark.parametrize("block_size", [4, 5])
def test_chunked_backward(block_size, monkeypatch):
    from longify.attention import flash_cpu

    monkeypatch.setattr(flash_cpu, "CHUNK_ROWS", 8)  # several backward kernel calls per sequence
    hf, fast = pair(tiny_config(window=8), block_size=block_size)
    assert_same(hf, fast, batch([45, 30, 38], 45, [[0, 9], [4], []]))


def test_gradient_checkpointing(path):
    hf, fast = pair(tiny_config(window=8), cls=LongformerForQuestionAnswering, kernel=path)
    for model in (hf, fast):
        model.train()
        enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
        enable()
    inputs = batch([40, 29], 40, [[0, 3], []])
    outs = []
    for model in (hf, fast):
        model.zero_grad(set_to_none=True)
        out = model(**inputs)
        (out.start_logits.mean() + out.end_logits.mean()).backward()
        outs.append((out.start_logits.detach(), {k: p.grad for k, p in model.named_parameters()}))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=TOL, rtol=0)
    for name, grad in outs[0][1].items():
        other = outs[1][1][name]
        if grad is None:
            assert other is None or not other.abs().max() > TOL, name
        else:
            torch.testing.assert_close(other, grad, atol=TOL, rtol=0, msg=name)


def test_kernel_is_per_model_not_per_class(monkeypatch):
    """Two models in one process keep their own kernel: the path taken is the module's, not a class switch."""
    from longify.attention import self_attention

    calls: list[str] = []
    for name, module, attr in (
        ("generic", self_attention, "band_attention"),
        ("flash", self_attention.flash_cpu, "band_flash_attention"),
        ("explicit", self_attention.dropout_band, "band_dropout_attention"),
    ):
        original = getattr(module, attr)
        monkeypatch.setattr(
            module, attr, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    assert not hasattr(FastLongformerSelfAttention, "copy_free_cpu")
    assert not hasattr(FastLongformerSelfAttention, "explicit_probs")
    inputs = batch([20, 13], 20, [[0], []])
    _, generic = pair(tiny_config(window=4, layers=1), kernel="generic")
    _, auto = pair(tiny_config(window=4, layers=1))
    _, explicit = pair(tiny_config(window=4, layers=1), kernel="explicit_probs")
    with torch.no_grad():
        for model, expected in (
            (generic, "generic"),
            (auto, "flash"),
            (explicit, "explicit"),
            (generic, "generic"),
        ):
            calls.clear()
            model(**inputs)
            assert calls == [expected]
    use_fast_attention(auto, kernel="generic")  # reinstalling sets the kernel of the modules in place
    calls.clear()
    with torch.no_grad():
        auto(**inputs)
    assert calls == ["generic"]
    with pytest.raises(ValueError, match="kernel"):
        use_fast_attention(auto, kernel="cuda")


def _mask_state():
    """(the function now in modeling_longformer, transformers' own function), after a garbage collection."""
    import gc

    from transformers import masking_utils
    from transformers.models.longformer import modeling_longformer as ml

    gc.collect()
    return ml.create_bidirectional_mask, masking_utils.create_bidirectional_mask


def _assert_unpatched():
    current, original = _mask_state()
    assert current is original, (
        "patched before the test (a fast model still alive elsewhere, or never undone)"
    )


def test_mask_patch_undone_when_last_fast_model_is_garbage_collected():
    from longify.attention import model_mask

    _assert_unpatched()
    first = use_fast_attention(LongformerModel(tiny_config(window=4, layers=1)))
    second = use_fast_attention(LongformerForMaskedLM(tiny_config(window=4, layers=1)))
    assert _mask_state()[0] is model_mask._row_mask
    del first
    assert _mask_state()[0] is model_mask._row_mask  # the second model still uses it
    inputs = batch([12, 7], 12, [[0], []])
    mask = inputs["attention_mask"]
    with torch.no_grad():
        second(**inputs)  # works, and is served the row mask
    row = model_mask._row_mask(second.config, torch.zeros(2, 12, 32), mask, allow_is_bidirectional_skip=False)
    assert row.untyped_storage().nbytes() == 2 * 12 * 4
    del second
    current, original = _mask_state()
    assert current is original


def test_mask_patch_undone_when_last_fast_model_is_reverted():
    from longify.attention import model_mask

    _assert_unpatched()
    keep = LongformerModel(tiny_config(window=4, layers=1))
    model = use_fast_attention(LongformerForQuestionAnswering(tiny_config(window=4, layers=1)))
    use_fast_attention(keep)
    use_hf_attention(keep)
    assert _mask_state()[0] is model_mask._row_mask
    use_hf_attention(model.longformer)  # reverting the part that holds the attention is enough
    current, original = _mask_state()
    assert current is original
    set_attention(model, "fast")
    assert _mask_state()[0] is model_mask._row_mask
    set_attention(model, "hf")
    assert _mask_state()[0] is _mask_state()[1]


def test_mask_patch_refuses_a_foreign_replacement(monkeypatch):
    from transformers.models.longformer import modeling_longformer as ml

    from longify.errors import LongifyError

    _assert_unpatched()

    def foreign(**kwargs):
        raise AssertionError("not to be called here")

    monkeypatch.setattr(ml, "create_bidirectional_mask", foreign)
    model = LongformerModel(tiny_config(window=4, layers=1))
    with pytest.raises(LongifyError, match=r"create_bidirectional_mask was replaced by .*foreign"):
        use_fast_attention(model)
    assert ml.create_bidirectional_mask is foreign
    assert not uses_fast_attention(model)  # refused before changing anything
