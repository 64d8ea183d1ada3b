"""``pretrain`` on a data-cache entry whose bytes changed since it was built rebuilds the entry, with a warning,
and trains on the rebuilt blocks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from helpers import arrow_file, negate_ids, write_wikitext
from longify.cli import main

# ------------------------------------------------------------------------------------- through the CLI


def _pretrain(model: Path, out: Path, data: Path, cache: Path) -> list[str]:
    """4 steps on every block once or more (the whole tiny corpus is seen), no checkpoints kept."""
    return [
        "pretrain", "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128",
        "--attention_window", "32", "--train_file_path", str(data / "wiki.train.raw"), "--do_train",
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--seed", "7",
        "--report_to", "none", "--data_cache_dir", str(cache), "--disable_tqdm", "true", "--save_strategy", "no",
    ]  # fmt: skip


def test_pretrain_on_a_changed_cache_entry_rebuilds_it(tiny_sources, tmp_path, caplog) -> None:
    """Every block of the entry has 64 bytes changed (negative ids, same size): the run warns, rebuilds the
    entry and trains exactly as a run on a clean cache (never an IndexError from ids out of the vocabulary)."""
    wiki = write_wikitext(tmp_path / "wiki")
    cache = tmp_path / "cache"
    assert main(_pretrain(tiny_sources["roberta"], tmp_path / "clean", wiki, cache)) == 0
    clean = json.loads((tmp_path / "clean" / "pretrain_metrics.json").read_text(encoding="utf-8"))
    (entry,) = [p for p in cache.iterdir() if (p / "stats.json").is_file()]
    from datasets import load_from_disk

    rows = load_from_disk(str(entry)).to_dict()["input_ids"]
    negate_ids(arrow_file(entry), rows)
    with caplog.at_level(logging.INFO, logger="longify"):
        assert main(_pretrain(tiny_sources["roberta"], tmp_path / "again", wiki, cache)) == 0
    assert "damaged data-cache entry" in caplog.text and "differs from its build (sha256)" in caplog.text
    again = json.loads((tmp_path / "again" / "pretrain_metrics.json").read_text(encoding="utf-8"))
    assert (
        (again["steps"], again["train_loss"])
        == (clean["steps"], clean["train_loss"])
        == (4, clean["train_loss"])
    )
