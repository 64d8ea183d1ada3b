"""Constants and small helpers shared by the tests (imported as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("roberta", "xlm-roberta", "camembert", "bert", "data2vec-text")
SOURCE_LEN = 64

REPO = Path(__file__).resolve().parents[1]
SHARED_XQUAD = REPO.parent / "shared" / "data" / "xquad"
