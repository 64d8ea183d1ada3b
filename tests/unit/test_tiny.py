"""The tiny builders reproduce each family's tokenizer conventions, offline."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from helpers import FAMILIES
from longify.tiny import tiny_model, train_tokenizer

# (pad, cls) ids the real checkpoints use, which the position offset depends on
EXPECTED = {"roberta": (1, 0), "xlm-roberta": (1, 0), "data2vec-text": (1, 0), "bert": (0, 2)}
PIECES = {"roberta": "Ġ", "data2vec-text": "Ġ", "xlm-roberta": "▁", "camembert": "▁", "bert": "##"}


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_family_conventions(family: str, tiny_sources) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_sources[family])
    assert tok.is_fast
    if family in EXPECTED:
        assert (tok.pad_token_id, tok.cls_token_id) == EXPECTED[family]
    pieces = tok.tokenize("The economy of Kalora has long depended on glassmaking.")
    assert any(PIECES[family] in p for p in pieces), pieces
    enc = tok("Where is it?", "It is on the river.", return_offsets_mapping=True)
    assert len(enc["offset_mapping"]) == len(enc["input_ids"])


def test_tiny_model_matches_tokenizer() -> None:
    tok = train_tokenizer("roberta", vocab_size=300, model_max_length=32)
    model = tiny_model("roberta", tok, max_len=32)
    assert model.config.vocab_size == len(tok)
    assert model.config.max_position_embeddings == 32 + tok.pad_token_id + 1
    assert tok.model_max_length == 32
