"""The MLM data cache is verified by content: an entry whose bytes changed since it was built, its size kept,
is a damaged entry (warning, rebuilt), never token ids out of the vocabulary.

Each entry's ``stats.json`` records the SHA-256 of every file beside its size; loading checks the sizes (cheap,
first), then the hashes. Entries of earlier versions (sizes only) still load, checked by size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import arrow_file, negate_ids
from longify.demo.corpus import wikitext
from longify.fileio import file_sha256
from longify.mlm.data import load_blocks
from longify.tiny import train_tokenizer

BLOCK = 32


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("roberta")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "wiki.train.raw"
    path.write_text(wikitext(30, seed=3), encoding="utf-8")
    return path


def test_stats_json_records_each_files_sha256(tok, corpus, tmp_path) -> None:
    _, stats = load_blocks(str(corpus), tok, BLOCK, cache_dir=str(tmp_path / "c"))
    entry = Path(stats.cache_path)
    saved = json.loads((entry / "stats.json").read_text(encoding="utf-8"))
    names = sorted(p.name for p in entry.iterdir() if p.name != "stats.json")
    assert sorted(saved["files_sha256"]) == sorted(saved["files"]) == names
    assert all(saved["files_sha256"][n] == file_sha256(entry / n) for n in names)


def test_same_size_edit_of_the_arrow_file_is_rebuilt_with_a_warning(tok, corpus, tmp_path, caplog) -> None:
    cache = str(tmp_path / "c")
    first, stats = load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)
    expected = first.to_dict()["input_ids"]  # copied out of the memory map before the file is changed
    del first
    entry = Path(stats.cache_path)
    negate_ids(arrow_file(entry), [expected[len(expected) // 2]])  # 64 bytes of one block
    with caplog.at_level(logging.WARNING, logger="longify.mlm.data"):
        again, stats2 = load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)
    ids = again.to_dict()["input_ids"]
    assert not stats2.from_cache and ids == expected
    assert min(min(r) for r in ids) >= 0 and max(max(r) for r in ids) < len(tok)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "damaged data-cache entry" in m and f"{arrow_file(entry).name} differs from its build (sha256)" in m
        for m in warnings
    ), warnings
    assert load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)[1].from_cache  # the rebuilt entry verifies


def test_same_size_edit_of_a_metadata_file_is_rebuilt(tok, corpus, tmp_path, caplog) -> None:
    cache = str(tmp_path / "c")
    entry = Path(load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)[1].cache_path)
    state = entry / "state.json"
    text = state.read_text(encoding="utf-8")
    at = text.index('"_fingerprint": "') + len('"_fingerprint": "')
    changed = text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]  # same size, loads as before
    state.write_text(changed, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="longify.mlm.data"):
        assert not load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)[1].from_cache
    assert "state.json differs from its build (sha256)" in caplog.text


def test_entry_of_an_earlier_version_loads_checked_by_size(tok, corpus, tmp_path, caplog) -> None:
    """No ``files_sha256`` (written before the hashes): still a cache hit, said at info level; a size
    change is still caught."""
    cache = str(tmp_path / "c")
    first, stats = load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)
    expected = first.to_dict()["input_ids"]
    del first
    entry = Path(stats.cache_path)
    saved = json.loads((entry / "stats.json").read_text(encoding="utf-8"))
    del saved["files_sha256"]
    (entry / "stats.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="longify.mlm.data"):
        ds, warm = load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)
    assert warm.from_cache and ds.to_dict()["input_ids"] == expected
    assert "checked by size only" in caplog.text
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
