"""The one family registry: position offsets and convertible types, asked by every module."""

from __future__ import annotations

import pytest
from transformers import (
    BertConfig,
    DistilBertConfig,
    GPT2Config,
    LongformerConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from longify.errors import LongifyError
from longify.families import CONVERTIBLE, FAMILIES, position_offset, usable_positions


@pytest.mark.parametrize(
    ("config", "offset", "usable"),
    [
        (RobertaConfig(pad_token_id=1, max_position_embeddings=514), 2, 512),  # roberta-base
        (XLMRobertaConfig(pad_token_id=1, max_position_embeddings=514), 2, 512),
        (LongformerConfig(pad_token_id=1, max_position_embeddings=4098), 2, 4096),  # longformer-base-4096
        (BertConfig(pad_token_id=0, max_position_embeddings=512), 0, 512),  # bert-base
        (DistilBertConfig(max_position_embeddings=512), 0, 512),  # distilbert-base
    ],
)
def test_offsets_of_released_models(config, offset, usable) -> None:
    assert position_offset(config) == offset and usable_positions(config) == usable


def test_unknown_type_is_an_error_or_the_default() -> None:
    config = GPT2Config(n_positions=1024)
    config.max_position_embeddings = 1024
    with pytest.raises(LongifyError, match="model_type 'gpt2' is not supported"):
        position_offset(config)
    assert usable_positions(config, default_offset=0) == 1024


def test_convertible_types_are_the_registry_families() -> None:
    assert tuple(sorted(FAMILIES)) == CONVERTIBLE
    assert set(CONVERTIBLE) >= {
        "albert",
        "bert",
        "camembert",
        "data2vec-text",
        "deberta-v2",
        "distilbert",
        "electra",
        "roberta",
        "xlm-roberta",
    }
    assert "longformer" not in CONVERTIBLE
