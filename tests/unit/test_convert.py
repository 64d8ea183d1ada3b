"""Conversion: every family becomes a standard Longformer that is still its source model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    LongformerForMaskedLM,
)

from helpers import FAMILIES, SOURCE_LEN
from longify.convert import convert, extend_positions
from longify.convert.verify import compare_models, verification_batches

MAX_POS = 200  # not a multiple of SOURCE_LEN: the last copy is truncated
WINDOW = 2 * SOURCE_LEN  # one-sided SOURCE_LEN: covers every input the source can take


@pytest.fixture(scope="module")
def converted(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("long")
    for fam, src in tiny_sources.items():
        convert(str(src), root / fam, max_pos=MAX_POS, attention_window=WINDOW)
    return {fam: root / fam for fam in tiny_sources}


def _inputs(tok, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two rows of ``length`` ordinary tokens; the second padded after 2/3."""
    gen = torch.Generator().manual_seed(seed)
    specials = set(tok.all_special_ids)
    ordinary = torch.tensor([i for i in range(len(tok)) if i not in specials])
    ids = ordinary[torch.randint(len(ordinary), (2, length), generator=gen)]
    ids[:, 0] = tok.cls_token_id
    mask = torch.ones_like(ids)
    mask[1, 2 * length // 3 :] = 0
    ids[1, 2 * length // 3 :] = tok.pad_token_id
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", FAMILIES)
def test_converted_model_reproduces_source(family: str, tiny_sources, converted) -> None:
    src = AutoModel.from_pretrained(tiny_sources[family]).eval()
    long = AutoModel.from_pretrained(converted[family]).eval()
    assert long.config.model_type == "longformer"
    tok = AutoTokenizer.from_pretrained(tiny_sources[family])
    for length in (7, SOURCE_LEN // 2 + 1, SOURCE_LEN):
        batch = _inputs(tok, length, seed=length)
        with torch.no_grad():
            a = src(**batch).last_hidden_state
            b = long(**batch).last_hidden_state
        real = batch["attention_mask"].bool()
        assert (a - b)[real].abs().max().item() <= 1e-5, (family, length)


@pytest.mark.parametrize("family", FAMILIES)
def test_long_input_forward_backward(family: str, converted) -> None:
    model = AutoModelForMaskedLM.from_pretrained(converted[family])
    tok = AutoTokenizer.from_pretrained(converted[family])
    batch = _inputs(tok, 3 * SOURCE_LEN)
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape[:2] == (2, 3 * SOURCE_LEN)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    pos = model.longformer.embeddings.position_embeddings.weight.grad
    offset = model.config.pad_token_id + 1
    # positions beyond what the source could take receive gradient
    assert pos[offset + 2 * SOURCE_LEN : offset + 3 * SOURCE_LEN].abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_and_files(family: str, tiny_sources, converted) -> None:
    out = converted[family]
    assert (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    record = json.loads((out / "conversion.json").read_text())
    assert record["family"] == family and record["max_pos"] == MAX_POS
    assert record["verification"]["passed"] and record["verification"]["max_abs_diff_hidden"] <= 1e-5
    assert SOURCE_LEN in record["verification"]["lengths"]
    assert {"torch", "transformers"} <= set(record["versions"])
    assert "longify" in (out / "README.md").read_text()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == MAX_POS
    assert (
        type(AutoModelForQuestionAnswering.from_pretrained(out)).__name__ == "LongformerForQuestionAnswering"
    )
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert isinstance(mlm, LongformerForMaskedLM)
    # the MLM head is kept: the loaded head equals the source's
    src = AutoModelForMaskedLM.from_pretrained(tiny_sources[family])
    head = src.lm_head.dense.weight if hasattr(src, "lm_head") else src.cls.predictions.transform.dense.weight
    assert torch.equal(mlm.lm_head.dense.weight, head)


@pytest.mark.parametrize("family", FAMILIES)
def test_config_values_carried_over(family: str, tiny_sources, converted) -> None:
    src = AutoConfig.from_pretrained(tiny_sources[family])
    dst = AutoConfig.from_pretrained(converted[family])
    for field in (
        "vocab_size",
        "layer_norm_eps",
        "type_vocab_size",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
    ):
        assert getattr(dst, field) == getattr(src, field), field
    assert dst.max_position_embeddings == MAX_POS + src.pad_token_id + 1
    assert dst.attention_window == [WINDOW] * src.num_hidden_layers
    assert dst.sep_token_id == AutoTokenizer.from_pretrained(tiny_sources[family]).sep_token_id


def test_copy_positions_tile_source_rows(tiny_sources, converted) -> None:
    src = AutoModel.from_pretrained(tiny_sources["roberta"]).embeddings.position_embeddings.weight
    dst = AutoModel.from_pretrained(converted["roberta"]).embeddings.position_embeddings.weight
    off = 2
    assert dst.shape[0] == MAX_POS + off
    assert torch.equal(dst[:off], src[:off])  # offset rows kept
    for i in range(MAX_POS):
        assert torch.equal(dst[off + i], src[off + i % SOURCE_LEN])


def test_bert_positions_shifted_by_longformer_offset(tiny_sources, converted) -> None:
    src = AutoModel.from_pretrained(tiny_sources["bert"]).embeddings.position_embeddings.weight
    dst = AutoModel.from_pretrained(converted["bert"]).embeddings.position_embeddings.weight
    assert dst.shape[0] == MAX_POS + 1
    assert torch.equal(dst[1 : 1 + SOURCE_LEN], src)
    assert torch.equal(dst[1 + SOURCE_LEN : 1 + 2 * SOURCE_LEN], src)
    assert torch.count_nonzero(dst[0]) == 0


def test_extend_positions_methods() -> None:
    table = torch.randn(2 + 4, 3)
    copy = extend_positions(table, src_offset=2, dst_offset=2, new_len=10, method="copy")
    assert torch.equal(copy[2:], torch.cat([table[2:], table[2:], table[2:4]]))
    interp = extend_positions(table, src_offset=2, dst_offset=2, new_len=10, method="interpolate")
    assert interp.shape == (12, 3) and torch.equal(interp[:2], table[:2])
    # oracle: np.interp of each hidden column over the 4 source rows stretched onto 10 points, ends pinned
    grid = np.linspace(0, 3, 10)
    expected = np.stack([np.interp(grid, np.arange(4), table[2:, h].numpy()) for h in range(3)], axis=1)
    np.testing.assert_allclose(interp[2:].numpy(), expected, rtol=1e-5, atol=1e-6)
    rand = extend_positions(table, src_offset=2, dst_offset=2, new_len=10, method="random", seed=1)
    assert torch.equal(rand[:6], table) and not torch.equal(rand[6:10], copy[6:10])
    again = extend_positions(table, src_offset=2, dst_offset=2, new_len=10, method="random", seed=1)
    assert torch.equal(rand, again)
    with pytest.raises(ValueError):
        extend_positions(table, src_offset=2, dst_offset=2, new_len=4)


@pytest.mark.parametrize("position_init", ["interpolate", "random"])
def test_other_position_inits_are_verified(position_init: str, tiny_sources, tmp_path) -> None:
    # random keeps the source rows; interpolate moves them, so its weight mapping is verified with the
    # copied table and the interpolated one is put in afterwards
    out = tmp_path / "m"
    rec = convert(
        str(tiny_sources["roberta"]), out, max_pos=150, attention_window=WINDOW, position_init=position_init
    )
    assert rec["verification"]["passed"]
    assert json.loads((out / "conversion.json").read_text())["position_init"] == position_init
    src = AutoModel.from_pretrained(tiny_sources["roberta"]).embeddings.position_embeddings.weight
    dst = AutoModel.from_pretrained(out).embeddings.position_embeddings.weight
    rows = src.detach()[2:].numpy()  # the source's 64 position rows (offset 2)
    assert torch.equal(dst[:2], src[:2])
    if position_init == "interpolate":  # oracle: np.interp per hidden column, 64 rows stretched onto 150
        grid = np.linspace(0, rows.shape[0] - 1, 150)
        cols = [np.interp(grid, np.arange(rows.shape[0]), rows[:, h]) for h in range(rows.shape[1])]
        np.testing.assert_allclose(dst[2:].detach().numpy(), np.stack(cols, axis=1), rtol=1e-5, atol=1e-6)
    else:  # random keeps the source rows and draws the rest with the source's initializer_range
        assert torch.equal(dst[2 : 2 + rows.shape[0]], src[2:])
        std = AutoConfig.from_pretrained(tiny_sources["roberta"]).initializer_range
        assert abs(float(dst[2 + rows.shape[0] :].detach().std()) - std) < 0.2 * std


def test_global_projections(tiny_sources, converted, tmp_path) -> None:
    layer = AutoModel.from_pretrained(converted["xlm-roberta"]).encoder.layer[1].attention.self
    for name in ("query", "key", "value"):
        assert torch.equal(getattr(layer, f"{name}_global").weight, getattr(layer, name).weight)
        assert torch.equal(getattr(layer, f"{name}_global").bias, getattr(layer, name).bias)
    convert(
        str(tiny_sources["xlm-roberta"]),
        tmp_path / "r",
        max_pos=WINDOW,  # a window may not be wider than the positions
        attention_window=WINDOW,
        global_init="random",
    )
    layer = AutoModel.from_pretrained(tmp_path / "r").encoder.layer[1].attention.self
    assert not torch.equal(layer.query_global.weight, layer.query.weight)


def test_per_layer_windows(tiny_sources, tmp_path) -> None:
    rec = convert(str(tiny_sources["bert"]), tmp_path / "w", max_pos=128, attention_window="128,32")
    assert AutoConfig.from_pretrained(tmp_path / "w").attention_window == [128, 32]
    # the requested windows are checked on inputs the narrowest covers (32 // 2 + 1 tokens), the same
    # weights with a widened window on inputs of the full source length
    assert 17 in rec["verification"]["lengths"] and SOURCE_LEN in rec["verification"]["lengths"]


def test_verification_detects_a_different_model(tiny_sources, converted) -> None:
    src = AutoModelForMaskedLM.from_pretrained(tiny_sources["roberta"])
    long = AutoModelForMaskedLM.from_pretrained(converted["roberta"])
    tok = AutoTokenizer.from_pretrained(converted["roberta"])
    batches = verification_batches(tok, len(tok), SOURCE_LEN)
    assert compare_models(src, long, batches, tolerance=1e-5).passed
    with torch.no_grad():
        long.longformer.encoder.layer[0].output.LayerNorm.bias.add_(1e-3)
    bad = compare_models(src, long, batches, tolerance=1e-5)
    assert not bad.passed and bad.max_abs_diff_hidden > 1e-5
