"""QA evaluation's forward pass (``window_logits``): inference mode, length-sorted batches padded to a window
multiple, the same logits as one window at a time through HF's attention, and CPU bf16 autocast."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np
import pytest
import torch
from transformers import LongformerConfig, LongformerForQuestionAnswering
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from helpers import REPO, AttentionCalls
from longify.attention import use_fast_attention, use_hf_attention
from longify.qa.features import QACollator
from longify.qa.pipeline import window_logits

WINDOW = 16
LENGTHS = (200, 23, 97, 130, 61, 17, 250, 96, 33)  # unsorted; several window multiples
GLOBAL = 5  # question tokens (+ CLS) with global attention


def tiny_qa_model(seed: int = 0) -> LongformerForQuestionAnswering:
    torch.manual_seed(seed)
    config = LongformerConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        attention_window=WINDOW,
        max_position_embeddings=258,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return LongformerForQuestionAnswering(config).eval()


def features(lengths: tuple[int, ...] = LENGTHS) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for n in lengths:
        ids = rng.integers(3, 120, size=n).astype(np.int32)
        ids[0] = 0
        glob = np.zeros(n, dtype=np.int32)
        glob[: min(GLOBAL, n)] = 1
        out.append(
            {"input_ids": ids, "attention_mask": np.ones(n, dtype=np.int32), "global_attention_mask": glob}
        )
    return out


def one_at_a_time_hf(model: LongformerForQuestionAnswering, feats: list[dict[str, Any]]) -> list[np.ndarray]:
    """The oracle: each window alone, unpadded, through HF's own attention, under no_grad."""
    use_hf_attention(model)
    starts = []
    with torch.no_grad():
        for f in feats:
            batch = {k: torch.as_tensor(v, dtype=torch.long)[None] for k, v in f.items()}
            starts.append(model(**batch).start_logits[0].numpy())
    return starts


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_inference_mode_logits_equal_one_window_at_a_time(
    batch_size: int, seen: AttentionCalls
) -> None:
    model = tiny_qa_model()
    feats = features()
    expected = one_at_a_time_hf(model, feats)
    use_fast_attention(model)
    seen.calls.clear()
    starts, ends = window_logits(
        model, feats, QACollator(pad_token_id=1, pad_to_multiple_of=WINDOW), batch_size
    )
    for got, want, f in zip(starts, expected, feats, strict=True):
        assert got.shape == (len(f["input_ids"]),)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert all(len(e) == len(f["input_ids"]) for e, f in zip(ends, feats, strict=True))
    assert seen.calls and all(c["inference"] and not c["grad"] for c in seen.calls)
    # batches of length-sorted windows, each padded to its longest window rounded up to the window
    lengths = sorted(LENGTHS)
    groups = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    per_layer = seen.calls[:: model.config.num_hidden_layers]
    assert [c["shape"][:2] for c in per_layer] == [(len(g), -(-max(g) // WINDOW) * WINDOW) for g in groups]
    assert model.training is False


def test_window_logits_restores_train_mode(seen: AttentionCalls) -> None:
    model = tiny_qa_model().train()
    window_logits(model, features((40, 20)), QACollator(pad_token_id=1, pad_to_multiple_of=WINDOW), 2)
    assert model.training and all(not c["grad"] for c in seen.calls)
    ids = torch.tensor([[0, 5, 6, 7]])
    out = model(input_ids=ids, global_attention_mask=torch.zeros_like(ids), start_positions=torch.tensor([1]),
                end_positions=torch.tensor([2]))  # fmt: skip
    loss = out.loss
    loss.backward()  # the parameters are no inference tensors: training goes on after an evaluation
    assert model.qa_outputs.weight.grad is not None


@pytest.mark.parametrize("attention", ["fast", "hf"])
def test_cpu_bf16_autocast_is_active_and_close_to_fp32(attention: str, seen: AttentionCalls) -> None:
    model = tiny_qa_model()
    (use_fast_attention if attention == "fast" else use_hf_attention)(model)
    feats = features((200, 61, 17, 130))
    collator = QACollator(pad_token_id=1, pad_to_multiple_of=WINDOW)
    fp32, _ = window_logits(model, feats, collator, 2)
    assert not any(c["autocast"] for c in seen.calls)
    seen.calls.clear()
    bf16, _ = window_logits(model, feats, collator, 2, autocast_dtype=torch.bfloat16)
    assert seen.calls and all(c["autocast"] and c["inference"] for c in seen.calls)
    # the attention's output is bf16 under autocast (its projections are); the logits come back as fp32
    assert {c["dtype"] for c in seen.calls} == {torch.bfloat16}
    assert all(s.dtype == np.float32 for s in bf16)
    # bf16 keeps 8 significant bits (relative rounding 2^-9 per operation); over 2 layers of a tiny model
    # the logits move by a few 1e-3 of their scale, a wrong computation (e.g. a dropped mask) by O(1)
    scale = max(float(np.abs(s).max()) for s in fp32)
    for a, b in zip(fp32, bf16, strict=True):
        assert float(np.abs(a - b).max()) <= 0.03 * scale


def test_bench_qa_eval_quick_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/bench_qa_eval.py --quick``: every case timed, ratios and matmul rates in its JSON line."""
    spec = importlib.util.spec_from_file_location("bench_qa_eval", REPO / "benchmarks" / "bench_qa_eval.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == out
    assert [(r["batch"], r["precision"]) for r in out["results"]] == [
        (1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16"),
    ]  # fmt: skip
    for row in out["results"]:
        assert row["fast_s"] > 0 and row["hf_s"] > 0 and row["fast_over_hf"] > 0
        assert row["floor_s"] > 0 and row["floor_over_hf"] > 0
    assert out["results"][1]["fast_bf16_over_fp32"] > 0
    assert min(out["matmul_gflops"]["fp32"]) > 0 and min(out["matmul_gflops"]["bf16"]) > 0


def test_benchmark_floor_is_a_pass_through_and_comes_off() -> None:
    """``benchmarks/passthrough.py``: each self-attention returns its value projection; the fast and HF
    attentions come back with the same parameters, so the benchmarks can switch between them."""
    from transformers import LongformerConfig, LongformerModel

    from longify.attention import FastLongformerSelfAttention, use_hf_attention

    spec = importlib.util.spec_from_file_location("passthrough", REPO / "benchmarks" / "passthrough.py")
    assert spec is not None and spec.loader is not None
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    config = LongformerConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        attention_window=8, max_position_embeddings=66, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LongformerModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(3, 50, (2, 40))
    with torch.no_grad():
        reference = model(input_ids=ids).last_hidden_state
        floor.use_passthrough_attention(model)
        attention = model.encoder.layer[0].attention.self
        x = torch.randn(2, 40, 32)
        assert torch.allclose(attention(x)[0], attention.value(x), atol=1e-6)
        assert not torch.allclose(model(input_ids=ids).last_hidden_state, reference, atol=1e-3)
        floor.use_real_fast(model)
        assert all(
            type(m) is FastLongformerSelfAttention
            for m in model.modules()
            if "SelfAttention" in type(m).__name__
        )
        assert torch.allclose(model(input_ids=ids).last_hidden_state, reference, atol=1e-5)
        floor.use_passthrough_attention(model)
        use_hf_attention(model)
        assert all(
            type(m) is LongformerSelfAttention for m in model.modules() if "SelfAttention" in type(m).__name__
        )
        assert torch.allclose(model(input_ids=ids).last_hidden_state, reference, atol=1e-5)
