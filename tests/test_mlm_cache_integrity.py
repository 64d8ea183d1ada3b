"""The MLM data cache verified by content (issue 23): an entry whose bytes changed since it was built, its
size kept, is a damaged entry (warning, rebuilt), never token ids out of the vocabulary.

Each entry's ``stats.json`` records the SHA-256 of every file beside its size; loading checks the sizes (cheap,
first), then the hashes. Entries of earlier versions (sizes only) still load, checked by size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from helpers import write_wikitext
from longify.cli import main
from longify.demo.corpus import wikitext
from longify.mlm.data import load_blocks
from longify.runinfo import file_sha256
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


def _arrow(entry: Path) -> Path:
    (arrow,) = entry.glob("*.arrow")
    return arrow


def _negate_ids(arrow: Path, rows: list[list[int]], n_ids: int = 16) -> None:
    """In ``arrow``, replace ``n_ids`` ids (``4 * n_ids`` bytes) after the first one of each of ``rows`` by
    their bitwise complement (``-id - 1``: negative ids); the file keeps its size."""
    data = bytearray(arrow.read_bytes())
    for row in rows:
        body = np.asarray(row[1 : 1 + n_ids], dtype="<i4").tobytes()
        at = data.find(body)
        assert at >= 0, "the row's ids are not in the file"
        data[at : at + len(body)] = (~np.asarray(row[1 : 1 + n_ids], dtype="<i4")).tobytes()
    assert len(data) == arrow.stat().st_size
    arrow.write_bytes(bytes(data))


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
    _negate_ids(_arrow(entry), [expected[len(expected) // 2]])  # 64 bytes of one block
    with caplog.at_level(logging.WARNING, logger="longify.mlm.data"):
        again, stats2 = load_blocks(str(corpus), tok, BLOCK, cache_dir=cache)
    ids = again.to_dict()["input_ids"]
    assert not stats2.from_cache and ids == expected
    assert min(min(r) for r in ids) >= 0 and max(max(r) for r in ids) < len(tok)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "damaged data-cache entry" in m and f"{_arrow(entry).name} differs from its build (sha256)" in m
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


# ------------------------------------------------------------------------------------- through the CLI


def _pretrain(model: Path, out: Path, data: Path, cache: Path) -> list[str]:
    """4 steps on every block once or more (the whole tiny corpus is seen), no checkpoints kept."""
    return [
        "pretrain", "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128",
        "--attention_window", "32", "--train_file_path", str(data / "wiki.train.raw"), "--do_train",
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--seed", "7",
        "--report_to", "none", "--data_cache_dir", str(cache), "--disable_tqdm", "true", "--save_strategy", "no",
    ]  # fmt: skip


@pytest.mark.integration
def test_pretrain_on_a_changed_cache_entry_rebuilds_it(tiny_sources, tmp_path, caplog) -> None:
    """Every block of the entry has 64 bytes changed (negative ids, same size): the run warns, rebuilds the
    entry and trains exactly as a run on a clean cache, where it used to die with an IndexError."""
    wiki = write_wikitext(tmp_path / "wiki")
    cache = tmp_path / "cache"
    assert main(_pretrain(tiny_sources["roberta"], tmp_path / "clean", wiki, cache)) == 0
    clean = json.loads((tmp_path / "clean" / "pretrain_metrics.json").read_text(encoding="utf-8"))
    (entry,) = [p for p in cache.iterdir() if (p / "stats.json").is_file()]
    from datasets import load_from_disk

    rows = load_from_disk(str(entry)).to_dict()["input_ids"]
    _negate_ids(_arrow(entry), rows)
    with caplog.at_level(logging.INFO, logger="longify"):
        assert main(_pretrain(tiny_sources["roberta"], tmp_path / "again", wiki, cache)) == 0
    assert "damaged data-cache entry" in caplog.text and "differs from its build (sha256)" in caplog.text
    again = json.loads((tmp_path / "again" / "pretrain_metrics.json").read_text(encoding="utf-8"))
    assert (
        (again["steps"], again["train_loss"])
        == (clean["steps"], clean["train_loss"])
        == (4, clean["train_loss"])
    )
