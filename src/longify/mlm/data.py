"""Text corpora -> token blocks for long masked-LM pretraining, cached on disk.

Every non-blank line of a text file (WikiText layout or plain), every ``.jsonl`` record's ``text_field``
or every row of a ``datasets`` hub split is one *text unit*: surrounding whitespace stripped, WikiText
headings `` = Title = `` kept as text (as the allenai notebook's TextDataset kept them). Units are
tokenized without special tokens (fast backend, batched, in threads of this process), their ids
concatenated in order (documents span blocks, as in the paper and run_mlm's group_texts) and cut into
``[cls] + block_size-2 ids + [sep]``. Grouping runs over the whole token stream (numpy), so nothing is
lost between batches; only the final tail that fills no block is dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pyarrow as pa
from datasets.table import InMemoryTable
from tokenizers import Tokenizer

from longify.errors import LongifyError, first_line
from longify.fileio import (
    check_writable,
    file_sha256,
    files_sha256,
    honour_umask_tree,
    write_failure,
    write_json_atomic,
)
from longify.locks import output_lock, remove_dead_leftovers
from longify.mlm.masking import mask_for_eval
from longify.outdir import make_temp_dir
from longify.textfiles import path_kind, read_failure, utf8_lines

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["BlockStats", "load_blocks", "mask_for_eval"]

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
SMALL_INPUT_BYTES = 1 << 20  # default num_proc: min(cpus, 8), but 1 below this (start-up would dominate)
MAP_BATCH = 10_000  # text units per tokenizer call
LONG_UNIT_CHARS = 1 << 16  # longer text units are tokenized in pieces (see split_long_unit)
BATCH_CHARS = 1 << 22  # characters per tokenizer call at most (a batch of long lines, in groups)
_PATH_SUFFIXES = {".raw", ".txt", ".jsonl", ".json", ".tokens", ".text"}
_Source = tuple[str, str]  # (kind: "text" | "jsonl" | "hub", path or name)


@dataclass
class BlockStats:
    """One split. ``n_chars``/``n_tokens``: all kept text units (stripped, blank lines dropped, headings
    kept) and their ids without special tokens, counted before the tail is dropped."""

    n_files: int
    n_chars: int
    n_tokens: int
    n_blocks: int
    block_size: int
    cache_path: str
    from_cache: bool
    seconds: float
    n_dropped_tokens: int = 0  # the tail that fills no block


def resolve_sources(files: list[str] | str) -> list[_Source]:
    """Existing paths are files; a missing path-like name is an error; anything else a hub name."""
    names = [str(f) for f in ([files] if isinstance(files, str | os.PathLike) else files)]
    if not names:
        raise LongifyError("no training/evaluation files given")
    out: list[_Source] = []
    for name in names:
        path = Path(name).expanduser()
        kind = path_kind(path)  # a folder we may not look into is said so, not "no such file"
        if kind == "dir":
            raise LongifyError(f"{name}: is a directory; pass the text files in it")
        if kind is not None and path.suffix == ".json":
            raise LongifyError(f"{name}: .json is not supported; use .jsonl (one JSON object per line)")
        if kind is not None:
            out.append(("jsonl" if path.suffix == ".jsonl" else "text", str(path)))
        elif path.suffix in _PATH_SUFFIXES or name.startswith((".", "/", "~")):
            raise LongifyError(f"{name}: no such file")
        else:
            out.append(("hub", name))
    if len(out) > 1 and any(kind == "hub" for kind, _ in out):
        raise LongifyError(f"{', '.join(names)}: a datasets name must be given alone, not mixed with files")
    return out


def checked_sha256(path: str) -> str:
    """``file_sha256``, an unreadable file a one-line error."""
    try:
        return file_sha256(path)
    except OSError as err:
        raise read_failure(path, err) from None


def read_text_units(path: str) -> list[str]:
    """Non-blank lines of a text file (``\n``, ``\r\n`` or ``\r`` ends a line), stripped; WikiText
    headings are kept as text. A byte that is not UTF-8 is named by line, column and offset in the file."""
    units = []
    for _, line in utf8_lines(path):
        for part in line.split("\r") if "\r" in line else (line,):
            if part := part.strip():
                units.append(part)
    if not units:
        raise LongifyError(f"{path}: no text (empty or only blank lines)")
    return units


def read_jsonl_units(path: str, text_field: str) -> list[str]:
    """The stripped ``text_field`` of every record of a .jsonl file (blank lines and texts skipped)."""
    units = []
    for lineno, line in utf8_lines(path):
        try:
            record = json.loads(line) if line.strip() else {text_field: ""}
        except json.JSONDecodeError as e:
            raise LongifyError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            what = "is not a string" if isinstance(record, dict) and text_field in record else "is missing"
            raise LongifyError(f"{path}:{lineno}: field '{text_field}' {what} (set the text field)")
        if text := record[text_field].strip():
            units.append(text)
    if not units:
        raise LongifyError(f"{path}: no text (no non-empty '{text_field}' values)")
    return units


def load_hub_texts(name: str, config: str | None, split: str, text_field: str) -> datasets.Dataset:
    """A hub dataset's ``text_field`` column as ``text``; one clear line where it cannot be loaded."""
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline, unknown name, bad config/split: all the same to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LongifyError(f"{name}: no such file, and not loadable as a datasets name ({reason})") from None
    if text_field not in ds.column_names:
        raise LongifyError(f"{name}: no column '{text_field}' (columns: {', '.join(ds.column_names)})")
    renamed = {text_field: "text"} if text_field != "text" else {}
    return ds.select_columns([text_field]).rename_columns(renamed)


def backend_copy(tokenizer: PreTrainedTokenizerBase) -> tuple[Tokenizer, str]:
    """A fresh copy of the fast tokenizer's backend (no truncation/padding) and its sha256."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise LongifyError(f"{type(tokenizer).__name__}: a fast (tokenizers-backed) tokenizer is required")
    copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy, hashlib.sha256(copy.to_str().encode()).hexdigest()


def special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """(cls, sep): RoBERTa <s> </s>, BERT [CLS] [SEP]; bos/eos where cls/sep are unset."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls is None or sep is None:
        raise LongifyError(f"{type(tokenizer).__name__}: tokenizer has no cls/sep (or bos/eos) token")
    return int(cls), int(sep)


def group_blocks(ids: np.ndarray, block_size: int, cls: int, sep: int) -> np.ndarray:
    """(n_blocks, block_size) int32: ``cls + block_size-2 ids + sep`` per row; the tail is dropped."""
    body = block_size - 2
    n = len(ids) // body
    blocks = np.empty((n, block_size), dtype=np.int32)
    blocks[:, 0], blocks[:, -1] = cls, sep
    blocks[:, 1:-1] = ids[: n * body].reshape(n, body)
    return blocks


def blocks_dataset(blocks: np.ndarray) -> datasets.Dataset:
    """An in-memory Dataset with one ``input_ids`` list per row, built without a Python round trip."""
    size, rows = blocks.shape[1], max(1, (1 << 28) // blocks.shape[1])  # chunks keep int32 offsets small
    chunks = [
        pa.ListArray.from_arrays(np.arange(0, len(part) * size + 1, size, dtype=np.int32), part.reshape(-1))
        for part in (blocks[i : i + rows] for i in range(0, len(blocks), rows))
    ]
    column = pa.chunked_array(chunks, type=pa.list_(pa.int32()))
    return datasets.Dataset(InMemoryTable(pa.table({"input_ids": column})))


_BREAK = re.compile(r"(?<=\S)\s")  # where a run of whitespace starts (after a non-space character)


def _last_break(text: str, lo: int, hi: int) -> int | None:
    """The last start of a whitespace run in ``text[lo:hi]`` (searched backwards in growing spans)."""
    span = 1024
    while True:
        begin = max(lo, hi - span)
        found = None
        for found in _BREAK.finditer(text, begin, hi):  # noqa: B007 (the last one is wanted)
            pass
        if found is not None:
            return found.start()
        if begin == lo:
            return None
        span *= 16


def split_long_unit(text: str, limit: int = LONG_UNIT_CHARS) -> list[str]:
    """``text`` cut into pieces of at most about ``limit`` characters, each cut where a run of whitespace
    starts (the run opens the next piece), never inside a word; a word longer than ``limit`` stays whole.

    Tokenizing one 20 MB line at once holds the whole line's normalisation and pre-tokenisation state
    (several GB); the pieces give the same ids wherever the tokenizer's pre-tokenizer splits at whitespace
    anyway (byte-level BPE, Metaspace/Unigram, BERT's WordPiece): a piece opens with the space that the
    first word carries in the running text (``Ġword``, ``▁word``). What can differ: a byte-level tokenizer
    with ``add_prefix_space`` adds a space before a piece that opens with a tab or other non-space
    whitespace, and a normaliser or model that looks across whitespace would see the cut."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(text) - start > limit:
        cut = _last_break(text, start + 1, start + limit)
        if cut is None:  # one word longer than the limit: cut at its end
            after = _BREAK.search(text, start + limit)
            if after is None:
                break
            cut = after.start()
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _bounded_groups(texts: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    """``texts`` in order, in groups of at most ``max_chars`` characters (or one longer text)."""
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) > max_chars:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text)
    if group:
        yield group


@contextmanager
def _single_threaded_calls() -> Iterator[None]:
    """``TOKENIZERS_PARALLELISM=false`` around our encodes (each call on one thread, our threads run them
    side by side), then as it was: later tokenizer calls of this process keep their own setting."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def tokenize_units(texts: datasets.Dataset, backend: Tokenizer, num_proc: int) -> tuple[np.ndarray, int]:
    """(all ids in row order as int32, characters tokenized).

    ``num_proc`` threads of this process each run the fast tokenizer (single-threaded, GIL released) on
    MAP_BATCH text units at a time, in order: the parallelism of ``map(num_proc)`` without worker processes
    that could outlive a killed run. Only the int32 ids are kept.
    """
    parts: list[np.ndarray] = []
    n_chars = 0

    def encode(batch: dict[str, list[str]]) -> tuple[np.ndarray, int]:
        units = [t.strip() if t else "" for t in batch["text"]]
        pieces = chain.from_iterable(split_long_unit(u) if len(u) > LONG_UNIT_CHARS else (u,) for u in units)
        ids = []
        for group in _bounded_groups(pieces, BATCH_CHARS):  # a long line's encodings are not all held
            encodings = backend.encode_batch_fast(group, add_special_tokens=False)
            ids.append(np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32))
        return (np.concatenate(ids) if ids else np.zeros(0, np.int32)), sum(map(len, units))

    with _single_threaded_calls(), ThreadPoolExecutor(num_proc) as pool:
        pending: deque[Future[tuple[np.ndarray, int]]] = deque()
        for batch in chain(texts.iter(batch_size=MAP_BATCH), [None]):
            if batch is not None:
                pending.append(pool.submit(encode, batch))
            while pending and (batch is None or len(pending) > num_proc):
                ids, chars = pending.popleft().result()
                parts.append(ids)
                n_chars += chars
    return (np.concatenate(parts) if parts else np.zeros(0, np.int32)), n_chars


def _read_texts(sources: list[_Source], text_field: str) -> tuple[datasets.Dataset, int]:
    """The text units of files as a one-column in-memory Dataset, and the files' bytes."""
    units: list[str] = []
    for kind, path in sources:
        units += read_jsonl_units(path, text_field) if kind == "jsonl" else read_text_units(path)
    table = pa.table({"text": pa.array(units, pa.string())})
    return datasets.Dataset(InMemoryTable(table)), sum(os.path.getsize(path) for _, path in sources)


def _file_sizes(folder: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.name != "stats.json"}


def _file_hashes(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each of ``names`` in ``folder`` (``files_sha256``: side by side, one thread per core)."""
    return files_sha256(folder, sorted(names))


def _open_entry(path: Path, *, verify: bool = True) -> tuple[datasets.Dataset, BlockStats]:
    """A cache entry, checked: its files as large as when written and (``verify``) with the SHA-256 they
    were written with, the table readable, the rows and their length what stats.json says. Anything else
    raises. An entry of a longify before content hashes (no ``files_sha256``) is checked by size only."""
    saved = json.loads((path / "stats.json").read_text(encoding="utf-8"))
    stats = BlockStats(**{f.name: saved[f.name] for f in fields(BlockStats)})
    if "files" in saved and _file_sizes(path) != saved["files"]:
        raise ValueError("its files are not the size they were written with (truncated?)")
    hashes = saved.get("files_sha256")
    if verify and hashes is not None:
        if not isinstance(hashes, dict) or sorted(hashes) != sorted(_file_sizes(path)):
            raise ValueError("stats.json's files_sha256 does not list the entry's files")
        actual = _file_hashes(path, hashes)
        if changed := [name for name in sorted(hashes) if actual[name] != hashes[name]]:
            raise ValueError(f"{changed[0]} differs from its build (sha256)")
    elif verify:
        logger.info(
            "%s: data-cache entry of an earlier longify (no content hashes): checked by size only", path
        )
    ds = datasets.load_from_disk(str(path))
    if ds.column_names != ["input_ids"] or len(ds) != stats.n_blocks:
        raise ValueError(f"{len(ds)} rows of {ds.column_names}, stats.json says {stats.n_blocks} blocks")
    if len(ds) and len(ds[len(ds) - 1]["input_ids"]) != stats.block_size:
        raise ValueError(f"its last row is not a block of {stats.block_size}")
    return ds, stats


def _load_cached(path: Path, t0: float, *, repair: bool) -> tuple[datasets.Dataset, BlockStats] | None:
    """The entry at ``path``, or None when there is none. A damaged entry (truncated, half-deleted, edited)
    is None too and, with ``repair`` (under the entry's lock), removed with a warning so that it is built
    again; an entry this user may not read is one line naming it."""
    try:
        if not (path / "stats.json").is_file():
            return None
        ds, stats = _open_entry(path)
    except PermissionError:
        raise LongifyError(
            f"{path}: cannot read this data-cache entry (permission denied); choose another cache with "
            "--data_cache_dir or $LONGIFY_CACHE"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as err:
        if repair:
            logger.warning(
                "%s: damaged data-cache entry (%s): removed, building it again", path, first_line(err)
            )
            try:
                shutil.rmtree(path)
            except OSError as rm_err:
                raise LongifyError(
                    f"{path}: damaged data-cache entry ({first_line(err)}) that cannot be removed "
                    f"({rm_err.strerror}); delete it or choose another --data_cache_dir"
                ) from None
        return None
    stats.cache_path, stats.from_cache, stats.seconds = str(path), True, time.time() - t0
    logger.info("mlm data: %d blocks of %d from cache %s", stats.n_blocks, stats.block_size, path)
    return ds, stats


def _build_entry(
    texts: datasets.Dataset,
    n_bytes: int,
    sources: list[_Source],
    backend: Tokenizer,
    block_size: int,
    specials: tuple[int, int],
    num_proc: int | None,
    root: Path,
    final: Path,
) -> BlockStats:
    """Tokenize, group and save one cache entry at ``final`` (through ``.KEY.tmp-<pid>-*`` beside it)."""
    num_proc = num_proc or (1 if n_bytes < SMALL_INPUT_BYTES else min(os.cpu_count() or 1, 8))
    work = make_temp_dir(root, f".{final.name}.tmp-")
    try:
        ids, n_chars = tokenize_units(texts, backend, num_proc)
        blocks = group_blocks(ids, block_size, *specials)
        if len(blocks) == 0:
            names = ", ".join(p for _, p in sources)
            raise LongifyError(f"{names}: {len(ids)} tokens, fewer than one block of {block_size}")
        blocks_dataset(blocks).save_to_disk(str(work / "blocks"))
        dropped = len(ids) - len(blocks) * (block_size - 2)
        stats = BlockStats(
            len(sources), n_chars, len(ids), len(blocks), block_size, str(final), False, 0, dropped
        )
        sizes = _file_sizes(work / "blocks")
        record = {
            **asdict(stats),
            "format_version": FORMAT_VERSION,
            "files": sizes,
            "files_sha256": _file_hashes(work / "blocks", sizes),
        }
        write_json_atomic(work / "blocks" / "stats.json", record)  # last: an entry without it is no entry
        honour_umask_tree(work / "blocks")
        try:
            (work / "blocks").rename(final)
        except OSError:  # built meanwhile by a process that could not lock (no locks on this file system)
            if not (final / "stats.json").is_file():
                raise
    except (OSError, RuntimeError) as err:
        failure = write_failure(err, work)  # a full disk: checked before the cleanup frees the space
        shutil.rmtree(work, ignore_errors=True)
        if failure is not None:
            raise LongifyError(f"{failure} (the data cache; --data_cache_dir or $LONGIFY_CACHE)") from None
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stats


def load_blocks(
    files: list[str] | str,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    *,
    text_field: str = "text",
    cache_dir: str | None = None,
    num_proc: int | None = None,
    dataset_config: str | None = None,
    split: str = "train",
) -> tuple[datasets.Dataset, BlockStats]:
    """Rows ``{"input_ids": block_size int32 ids}``: ``[cls] + block_size-2 tokens + [sep]``.

    What is read and dropped: see the module docstring. Cached under ``cache_dir`` (default
    ``$LONGIFY_CACHE`` or ``~/.cache/longify/mlm``) in a directory named by a hash of the file contents
    (or hub name/config/split), the tokenizer, block_size and FORMAT_VERSION; a second call loads it once
    its files have the sizes and SHA-256 recorded in its stats.json when it was built (else it is rebuilt).
    """
    t0 = time.time()
    if block_size < 3:
        raise LongifyError(f"block size {block_size}: must be at least 3 (cls + one token + sep)")
    sources = resolve_sources(files)
    backend, tok_hash = backend_copy(tokenizer)
    cls, sep = special_ids(tokenizer)
    kind, name = sources[0]
    hub = load_hub_texts(name, dataset_config, split, text_field) if kind == "hub" else None
    if hub is not None:
        content = [f"hub:{name}:{dataset_config}:{split}:{text_field}:{hub._fingerprint}"]
    else:
        content = [f"{k}:{text_field if k == 'jsonl' else ''}:{checked_sha256(p)}" for k, p in sources]
    parts = [f"v{FORMAT_VERSION}", *content, f"tokenizer:{tok_hash}:{cls}:{sep}", f"block_size:{block_size}"]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    root = Path(cache_dir or os.environ.get("LONGIFY_CACHE") or Path.home() / ".cache" / "longify" / "mlm")
    final = root / key
    if (cached := _load_cached(final, t0, repair=False)) is not None:
        return cached
    try:
        check_writable(root)
    except LongifyError as err:
        raise LongifyError(f"{err} (the data cache: --data_cache_dir or $LONGIFY_CACHE)") from None
    root.mkdir(parents=True, exist_ok=True)
    # one process builds an entry; another one asking for the same entry waits for it and loads it
    with output_lock(final, wait=True, main_process=True):
        if (cached := _load_cached(final, t0, repair=True)) is not None:
            return cached
        remove_dead_leftovers(root, f".{key}.tmp-", lambda p: shutil.rmtree(p, ignore_errors=True))
        texts, n_bytes = (hub, hub.data.nbytes) if hub is not None else _read_texts(sources, text_field)
        stats = _build_entry(texts, n_bytes, sources, backend, block_size, (cls, sep), num_proc, root, final)
    stats.seconds = time.time() - t0
    logger.info(
        "mlm data: %d chars, %d tokens -> %d blocks of %d (%d tail tokens dropped), cached at %s (%.1f s)",
        stats.n_chars, stats.n_tokens, stats.n_blocks, block_size, stats.n_dropped_tokens, final, stats.seconds,
    )  # fmt: skip
    return _open_entry(final, verify=False)[0], stats  # hashed as it was written, just now
