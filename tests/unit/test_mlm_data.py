"""The masked-LM data pipeline: text -> cached token blocks, deterministic evaluation masks."""

from __future__ import annotations

import ctypes
from pathlib import Path

import datasets
import pytest
import torch

from helpers import units_of, write_corpus
from longify.demo.corpus import wikitext
from longify.errors import LongifyError
from longify.mlm import data
from longify.mlm.data import BlockStats, load_blocks, mask_for_eval
from longify.tiny import train_tokenizer

BLOCK = 32


@pytest.fixture(scope="module")
def toks() -> dict:
    return {fam: train_tokenizer(fam) for fam in ("roberta", "bert")}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many map batches on small files, so that batch boundaries are crossed often."""
    monkeypatch.setattr(data, "MAP_BATCH", 37)


def check_blocks(ds, stats: BlockStats, tok, units: list[str], block: int = BLOCK) -> None:
    ids = [i for row in tok(units, add_special_tokens=False)["input_ids"] for i in row]
    rows = ds["input_ids"]
    assert len(rows) == stats.n_blocks == len(ids) // (block - 2) > 1
    assert all(len(r) == block and r[0] == tok.cls_token_id and r[-1] == tok.sep_token_id for r in rows)
    bodies = [i for r in rows for i in r[1:-1]]
    assert bodies == ids[: len(bodies)]  # nothing lost or duplicated; documents span blocks
    assert stats.n_tokens == len(ids) and stats.n_dropped_tokens == len(ids) - len(bodies) < block - 2
    assert stats.n_chars == sum(len(u) for u in units)


@pytest.mark.parametrize(
    ("fmt", "family"), [("raw", "roberta"), ("raw", "bert"), ("txt", "roberta"), ("jsonl", "bert")]
)
def test_blocks_are_the_token_stream(tmp_path, toks, small_batches, fmt, family):
    path, units = write_corpus(tmp_path, fmt)
    assert any(u.startswith("= ") for u in units)  # headings are kept as text
    ds, stats = load_blocks(str(path), toks[family], BLOCK, text_field="body", cache_dir=str(tmp_path / "c"))
    assert ds.features["input_ids"].feature.dtype == "int32"
    check_blocks(ds, stats, toks[family], units)
    assert not stats.from_cache and stats.n_files == 1 and stats.block_size == BLOCK


def test_several_files_and_processes(tmp_path, toks, small_batches):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (a, ua), (b, ub) = (
        write_corpus(tmp_path / "a", "raw", seed=1),
        write_corpus(tmp_path / "b", "txt", seed=2),
    )
    one, s1 = load_blocks(
        [str(a), str(b)], toks["roberta"], BLOCK, cache_dir=str(tmp_path / "c1"), num_proc=1
    )
    two, s2 = load_blocks(
        [str(a), str(b)], toks["roberta"], BLOCK, cache_dir=str(tmp_path / "c2"), num_proc=2
    )
    check_blocks(two, s2, toks["roberta"], ua + ub)
    assert one["input_ids"] == two["input_ids"] and s1.n_files == 2


def test_cache_hit_and_keys(tmp_path, toks):
    path, _ = write_corpus(tmp_path, "raw")
    cache = str(tmp_path / "cache")
    ds, cold = load_blocks(str(path), toks["roberta"], BLOCK, cache_dir=cache)
    again, warm = load_blocks(str(path), toks["roberta"], BLOCK, cache_dir=cache)
    assert warm.from_cache and not cold.from_cache and warm.cache_path == cold.cache_path
    assert again["input_ids"] == ds["input_ids"]
    assert (warm.n_chars, warm.n_tokens, warm.n_blocks, warm.n_dropped_tokens) == (
        cold.n_chars, cold.n_tokens, cold.n_blocks, cold.n_dropped_tokens,
    )  # fmt: skip
    assert sorted(p.name for p in Path(cache).iterdir()) == [Path(cold.cache_path).name]  # no temp dirs left

    saved = tmp_path / "tok"
    toks["roberta"].save_pretrained(saved)
    reloaded = type(toks["roberta"]).from_pretrained(saved)
    assert load_blocks(str(path), reloaded, BLOCK, cache_dir=cache)[1].from_cache  # tokenizer hash is stable

    other_tok = train_tokenizer("roberta", vocab_size=300)
    paths = {
        load_blocks(str(path), toks["roberta"], BLOCK + 2, cache_dir=cache)[1].cache_path,
        load_blocks(str(path), other_tok, BLOCK, cache_dir=cache)[1].cache_path,
        load_blocks(str(path), toks["bert"], BLOCK, cache_dir=cache)[1].cache_path,
    }
    path.write_text(path.read_text().replace("town", "city", 1))
    changed = load_blocks(str(path), toks["roberta"], BLOCK, cache_dir=cache)[1]
    assert not changed.from_cache
    assert len({cold.cache_path, changed.cache_path, *paths}) == 5


def test_cache_dir_from_environment(tmp_path, toks, monkeypatch):
    monkeypatch.setenv("LONGIFY_CACHE", str(tmp_path / "env-cache"))
    path, _ = write_corpus(tmp_path, "txt", n_articles=10)
    stats = load_blocks(str(path), toks["bert"], BLOCK)[1]
    assert Path(stats.cache_path).parent == tmp_path / "env-cache"


def test_parallelism_setting_is_not_leaked(tmp_path, toks, monkeypatch):
    """datasets' map(num_proc>1) puts TOKENIZERS_PARALLELISM=false into the C environment."""
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    path, _ = write_corpus(tmp_path, "raw", n_articles=10)
    load_blocks(str(path), toks["roberta"], BLOCK, cache_dir=str(tmp_path / "c"), num_proc=2)
    assert libc.getenv(b"TOKENIZERS_PARALLELISM") is None


@pytest.fixture(scope="module")
def blocks(tmp_path_factory, toks):
    tmp = tmp_path_factory.mktemp("eval")
    path, _ = write_corpus(tmp, "raw", n_articles=60)
    return load_blocks(str(path), toks["roberta"], 64, cache_dir=str(tmp / "c"))[0]


def test_eval_masks_are_deterministic(blocks, toks):
    tok = toks["roberta"]
    first, second = mask_for_eval(blocks, tok, seed=3), mask_for_eval(blocks, tok, seed=3)
    assert first["input_ids"] == second["input_ids"] and first["labels"] == second["labels"]
    assert mask_for_eval(blocks, tok, seed=4)["labels"] != first["labels"]


def test_eval_masks_follow_the_collator_recipe(blocks, toks):
    tok = toks["roberta"]
    masked = mask_for_eval(blocks, tok, mlm_probability=0.15, seed=0).with_format("torch")[:]
    orig = torch.tensor(blocks["input_ids"], dtype=torch.long)
    ids, labels = masked["input_ids"].long(), masked["labels"].long()
    chosen = labels != -100
    special = torch.isin(orig, torch.tensor(tok.all_special_ids))
    assert special[:, 0].all() and special[:, -1].all()
    assert not (chosen & special).any()  # specials are never masked
    assert torch.equal(labels[chosen], orig[chosen]) and torch.equal(ids[~chosen], orig[~chosen])
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.01
    n = chosen.sum().item()
    to_mask = (ids == tok.mask_token_id) & chosen
    kept = (ids == orig) & chosen
    assert abs(to_mask.sum().item() / n - 0.8) < 0.03 and abs(kept.sum().item() / n - 0.1) < 0.03


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_errors_are_one_clear_line(tmp_path, toks):
    tok, cache = toks["roberta"], str(tmp_path / "c")
    with pytest.raises(LongifyError) as e:
        load_blocks(str(tmp_path / "wiki.train.raw"), tok, BLOCK, cache_dir=cache)
    assert one_line(e) == f"{tmp_path / 'wiki.train.raw'}: no such file"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b c"}\n\n{"body": "x"}\n')
    with pytest.raises(LongifyError) as e:
        load_blocks(str(bad), tok, BLOCK, cache_dir=cache)
    assert f"{bad}:3:" in one_line(e) and "'text'" in str(e.value)
    bad.write_text('{"text": "a b c"}\n{"text": \n')
    with pytest.raises(LongifyError, match=r"bad.jsonl:2: not valid JSON"):
        load_blocks(str(bad), tok, BLOCK, cache_dir=cache)

    for content in ("", " \n \n\n"):
        empty = tmp_path / "empty.raw"
        empty.write_text(content)
        with pytest.raises(LongifyError) as e:
            load_blocks(str(empty), tok, BLOCK, cache_dir=cache)
        assert one_line(e).startswith(f"{empty}: no text")

    short = tmp_path / "short.txt"
    short.write_text("only a few words\n")
    with pytest.raises(LongifyError) as e:
        load_blocks(str(short), tok, BLOCK, cache_dir=cache)
    assert "fewer than one block" in one_line(e)
    with pytest.raises(LongifyError, match="must be at least 3"):
        load_blocks(str(short), tok, 2, cache_dir=cache)

    with pytest.raises(LongifyError) as e:  # offline in the tests: a hub name cannot be reached
        load_blocks("no-such-dataset-xyz", tok, BLOCK, cache_dir=cache)
    assert one_line(e).startswith("no-such-dataset-xyz: no such file, and not loadable as a datasets name")
    assert not list(Path(cache).glob(".*tmp*"))  # failed runs leave nothing behind


def test_datasets_name(tmp_path, toks, monkeypatch):
    """A name that is not a path goes to datasets.load_dataset (faked here: the tests are offline)."""
    text = wikitext(20, seed=5)
    rows = {"body": text.split("\n"), "id": list(range(text.count("\n") + 1))}
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    kwargs = {"text_field": "body", "cache_dir": str(tmp_path / "c"), "dataset_config": "raw-v1"}
    ds, stats = load_blocks("some/wiki", toks["roberta"], BLOCK, split="validation", **kwargs)
    assert calls == [("some/wiki", "raw-v1", "validation")]
    check_blocks(ds, stats, toks["roberta"], units_of(text))  # blank rows are skipped, headings kept
    assert load_blocks("some/wiki", toks["roberta"], BLOCK, split="validation", **kwargs)[1].from_cache
    with pytest.raises(LongifyError, match=r"some/wiki: no column 'missing' \(columns: body, id\)"):
        load_blocks("some/wiki", toks["roberta"], BLOCK, text_field="missing", cache_dir=str(tmp_path / "c"))
