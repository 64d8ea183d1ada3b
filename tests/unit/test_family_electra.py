"""ELECTRA (``longify.families.electra``): a generator whose embeddings are narrower than its hidden size
converts to ``full`` exactly and is refused by Longformer and BigBird in one line naming ``full``; a
discriminator (ElectraForPreTraining, embedding size = hidden size) converts to every target as a bare
encoder: its hidden states are the source's, its MLM head is new and named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, ElectraForPreTraining

from helpers import (
    SOURCE_LEN,
    TARGET_OPTIONS,
    assert_reproduces_source,
    convert_to_allowed,
    refused_by_cli,
)
from longify.tiny import save_tiny, tiny_model, train_tokenizer


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("electra", tmp_path_factory.mktemp("src") / "generator", max_len=SOURCE_LEN)


@pytest.fixture(scope="module")
def discriminator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "discriminator"
    tok = train_tokenizer("electra", model_max_length=SOURCE_LEN)
    model = tiny_model(
        "electra", tok, max_len=SOURCE_LEN, model_class=ElectraForPreTraining, embedding_size=32
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def converted(generator, discriminator, tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("long")
    return {
        "generator": convert_to_allowed(generator, root),
        "discriminator": convert_to_allowed(discriminator, root),
    }


def test_generator_embeds_narrower_than_hidden_and_converts_to_full_only(generator, converted) -> None:
    config = AutoConfig.from_pretrained(generator)
    assert config.embedding_size < config.hidden_size
    assert set(converted["generator"]) == {"full"}


def test_generator_full_target_reproduces_source_with_logits(generator, converted) -> None:
    out = converted["generator"]["full"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ElectraForMaskedLM"]
    assert_reproduces_source(generator, out, "full")


@pytest.mark.parametrize("target", ["longformer", "bigbird"])
def test_generator_refused_by_longformer_and_bigbird_naming_full(
    target: str, generator, tmp_path, capsys
) -> None:
    err = refused_by_cli(capsys, generator, tmp_path / "out", target)
    assert "embedding_size 16 differs from its hidden_size 32" in err and "use --target full" in err


@pytest.mark.parametrize("target", list(TARGET_OPTIONS))
def test_discriminator_is_a_bare_encoder_with_a_new_head(target: str, discriminator, converted) -> None:
    out = converted["discriminator"][target]
    assert_reproduces_source(discriminator, out, target, logits=False)
    record = json.loads((out / "conversion.json").read_text())
    assert record["mlm_head"] == "new" and record["verification"]["max_abs_diff_logits"] is None
    head = {k for k in record["new_tensors"] if "pooler" not in k}
    assert head and all("head" in k or "predictions" in k for k in head), head
