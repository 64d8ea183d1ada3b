"""Shared fixtures: offline always; tiny source models of every family, built once per session."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# keep the tests' tokenised-block caches out of the user's ~/.cache/longify
os.environ["LONGIFY_CACHE"] = tempfile.mkdtemp(prefix="longify-test-cache-")

from pathlib import Path

import pytest

from helpers import FAMILIES, REPO, SOURCE_LEN, AttentionCalls
from longify.tiny import save_tiny

TIERS = ("unit", "integration", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test not marked ``integration`` (Trainer runs, subprocesses, torchrun) or ``slow`` is ``unit``:
    ``make test-fast`` runs that tier alone."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS[1:]):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny MaskedLM + tokenizer per family, accepting SOURCE_LEN tokens."""
    root = tmp_path_factory.mktemp("sources")
    return {fam: save_tiny(fam, root / fam, max_len=SOURCE_LEN) for fam in FAMILIES}


@pytest.fixture(scope="session")
def xquad_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our small XQuAD-format fixtures under their official names (``xquad.{lang}.json``), laid out at test
    time so that no file in the repository carries the name of the real XQuAD files in ../shared/data."""
    out = tmp_path_factory.mktemp("xquad")
    for src in (REPO / "tests" / "fixtures" / "qa" / "xquad").glob("*.squad-format.json"):
        (out / f"xquad.{src.name.split('.')[0]}.json").write_bytes(src.read_bytes())
    return out


@pytest.fixture
def seen():
    """Records every Longformer self-attention call made during the test (``helpers.AttentionCalls``)."""
    import torch

    record = AttentionCalls()
    handle = torch.nn.modules.module.register_module_forward_hook(record.hook)
    try:
        yield record
    finally:
        handle.remove()
