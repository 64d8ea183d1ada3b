"""XLM-R at large size's shape rules (head size 64, intermediate 4x hidden, twice the base tiny's layers),
on a tiny config: converted to every target and equal to its source on short inputs, logits included."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig

from helpers import SOURCE_LEN, TARGET_OPTIONS, assert_reproduces_source, convert_to_allowed
from longify.tiny import save_tiny

LARGE = {"hidden": 128, "heads": 2, "intermediate": 512, "layers": 4}  # xlm-roberta-large: 1024/16/4096/24


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(
        "xlm-roberta", tmp_path_factory.mktemp("src") / "xlmr-large", max_len=SOURCE_LEN, **LARGE
    )


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return convert_to_allowed(source, tmp_path_factory.mktemp("long"))


def test_large_shape(source) -> None:
    config = AutoConfig.from_pretrained(source)
    assert config.hidden_size // config.num_attention_heads == 64
    assert config.intermediate_size == 4 * config.hidden_size


@pytest.mark.parametrize("target", list(TARGET_OPTIONS))
def test_large_xlm_roberta_target_reproduces_source(target: str, source, converted) -> None:
    assert_reproduces_source(source, converted[target], target)
