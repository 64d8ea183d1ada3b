"""MPNet (``longify.families.mpnet``): absolute positions from ``padding_idx + 1`` plus a relative-position
bias shared by every layer convert to ``full`` only: MPNetForMaskedLM with its position table extended by each
``--position-init`` and its relative bias kept, exact on short inputs with and without padding, logits
included; a bare MPNetModel (sentence-transformers' all-mpnet-base-v2 shape) converts with a new MLM head and
exact hidden states; Longformer and BigBird are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, MPNetConfig, MPNetModel

from helpers import FAMILY_MAX_POS, SOURCE_LEN, assert_reproduces_source, convert_to_allowed, refused_by_cli
from longify.convert import convert
from longify.families import position_offset, usable_positions
from longify.tiny import save_tiny, tiny_model, train_tokenizer

POSITIONS = "mpnet.embeddings.position_embeddings.weight"
BIAS = "mpnet.encoder.relative_attention_bias.weight"
OFFSET = 2  # MPNetEmbeddings hard-wires padding_idx 1: positions from row 2


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("mpnet", tmp_path_factory.mktemp("src") / "mpnet", max_len=SOURCE_LEN)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_to_allowed(source, tmp_path_factory.mktemp("long"))


def test_mpnet_converts_to_full_with_its_relative_bias_kept(source, converted) -> None:
    assert set(converted) == {"full"}
    dst = AutoConfig.from_pretrained(converted["full"])
    assert dst.architectures == ["MPNetForMaskedLM"]
    assert dst.max_position_embeddings == FAMILY_MAX_POS + OFFSET and usable_positions(dst) == FAMILY_MAX_POS
    src_sd, dst_sd = (
        load_file(source / "model.safetensors"),
        load_file(converted["full"] / "model.safetensors"),
    )
    assert torch.equal(dst_sd[BIAS], src_sd[BIAS])
    assert torch.equal(dst_sd[POSITIONS][: OFFSET + SOURCE_LEN], src_sd[POSITIONS])
    assert_reproduces_source(source, converted["full"], "full")
    record = json.loads((converted["full"] / "conversion.json").read_text())
    assert record["mlm_head"] == "source" and record["long_run"]["length"] == FAMILY_MAX_POS


def test_random_position_init_is_exact_on_short_inputs(source, tmp_path) -> None:
    convert(str(source), tmp_path / "random", max_pos=FAMILY_MAX_POS, target="full", position_init="random")
    assert_reproduces_source(source, tmp_path / "random", "full")


def test_interpolated_table_is_verified_and_only_the_position_rows_differ(
    source, converted, tmp_path
) -> None:
    """``interpolate`` moves the source rows (not exact by design): the mapping is verified with the copied
    table, then the stretched rows are swapped in, ends pinned; every other tensor is the copy's."""
    record = convert(
        str(source), tmp_path / "i", max_pos=FAMILY_MAX_POS, target="full", position_init="interpolate"
    )
    assert record["verification"]["passed"] and record["position_init"] == "interpolate"
    src, copy = load_file(source / "model.safetensors"), load_file(converted["full"] / "model.safetensors")
    out = load_file(tmp_path / "i" / "model.safetensors")
    assert out.keys() == copy.keys() and all(torch.equal(out[k], copy[k]) for k in out if k != POSITIONS)
    table = out[POSITIONS]
    assert table.shape[0] == OFFSET + FAMILY_MAX_POS and torch.equal(table[:OFFSET], src[POSITIONS][:OFFSET])
    torch.testing.assert_close(table[[OFFSET, -1]], src[POSITIONS][[OFFSET, -1]], atol=1e-6, rtol=0)


def test_positions_start_at_two_whatever_the_pad_token_id() -> None:
    assert position_offset(MPNetConfig(pad_token_id=0)) == position_offset(MPNetConfig()) == OFFSET


def test_bare_encoder_converts_with_a_new_head_and_exact_hidden_states(tmp_path) -> None:
    """all-mpnet-base-v2's shape: an ``MPNetModel`` saved with its pooler and no MLM head."""
    tok = train_tokenizer("mpnet", model_max_length=SOURCE_LEN)
    src = tmp_path / "bare"
    tiny_model("mpnet", tok, max_len=SOURCE_LEN, model_class=MPNetModel).save_pretrained(src)
    tok.save_pretrained(src)
    assert any(k.startswith("pooler.") for k in load_file(src / "model.safetensors"))
    convert(str(src), tmp_path / "out", max_pos=FAMILY_MAX_POS, target="full")
    record = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert record["mlm_head"] == "new" and record["verification"]["passed"]
    assert_reproduces_source(src, tmp_path / "out", "full", logits=False)


@pytest.mark.parametrize("target", ["longformer", "bigbird"])
def test_longformer_and_bigbird_refused_saying_why(target: str, source, tmp_path, capsys) -> None:
    err = refused_by_cli(capsys, source, tmp_path / "out", target)
    assert "relative-position bias" in err and "use --target full" in err
