"""What verifying an MLM data-cache entry by content (SHA-256 of its files, issue 23) costs at load.

Writes a WikiText-layout corpus of ``--mb`` MB (the synthetic encyclopedia of longify.demo), trains a
byte-level BPE tokenizer (RoBERTa family, 8000 ids) on a sample, builds the cache entry with ``load_blocks``
(blocks of ``--block-size``), then opens the entry the two ways ``load_blocks`` can, alternately:

(a) the anchor: sizes only (stats.json against the files, then ``datasets.load_from_disk`` + row checks),
    as before content hashes and as for entries of earlier versions;
(b) verified: the same plus the SHA-256 of every file of the entry against stats.json's ``files_sha256``.

Both with the entry's pages in the page cache (warm: the entry was just built or read) and evicted
(``posix_fadvise DONTNEED``, these files only: cold, as after a reboot or on another node; in a VM the
host may still cache the disk). Also shown:
a whole cache hit both ways (``load_blocks``, which also hashes the corpus to find the entry's key)
and the build.

    .venv/bin/python benchmarks/bench_cache_verify.py            # ~100 MB corpus (about a minute on 2 cores)
    .venv/bin/python benchmarks/bench_cache_verify.py --mb 5     # quick check

Times are the minimum over ``--repeat`` rounds; the ratio is (b) / (a) of the same run. The JSON object is the
last line printed (``--json FILE`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


from bench_checkpoint_hash import evict as evict_file
from bench_mlm_data import write_corpus
from cpu_kind import header, record
from longify.mlm import data
from longify.mlm.data import load_blocks, read_text_units
from longify.tiny import train_tokenizer


def evict(folder: Path) -> bool:
    """Drop the pages of ``folder``'s files from the page cache (these files only); False where impossible."""
    return all([evict_file(path) for path in folder.iterdir()])


open_entry = data._open_entry


def open_seconds(entry: Path, verify: bool) -> float:
    start = time.perf_counter()
    ds, _ = open_entry(entry, verify=verify)
    seconds = time.perf_counter() - start
    del ds
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB (default 100)")
    ap.add_argument("--block-size", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of (a) and (b); minimums are reported")
    ap.add_argument("--workdir", default=None, help="keep corpus and cache here (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    print(header())
    print(f"cpus        {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-cache-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, cache = work / "wiki.train.raw", work / "cache"
    size = write_corpus(corpus, args.mb) if not corpus.exists() else corpus.stat().st_size
    tok = train_tokenizer("roberta", texts=read_text_units(str(corpus))[:20000], vocab_size=args.vocab)
    shutil.rmtree(cache, ignore_errors=True)
    _, built = load_blocks(str(corpus), tok, args.block_size, cache_dir=str(cache))
    entry = Path(built.cache_path)
    entry_mb = sum(p.stat().st_size for p in entry.iterdir()) / 1e6
    print(
        f"corpus      {size / 1e6:.1f} MB -> {built.n_tokens} tokens, {built.n_blocks} blocks of {args.block_size}"
    )
    print(f"entry       {entry_mb:.1f} MB at {entry}; built in {built.seconds:.1f} s (hashes included)")

    best = {"size_warm": float("inf"), "verify_warm": float("inf")}
    can_evict = evict(entry)
    if can_evict:
        best |= {"size_cold": float("inf"), "verify_cold": float("inf")}
    for _ in range(args.repeat):
        for verify in (False, True):
            open_seconds(entry, verify)  # pages in
            key = "verify" if verify else "size"
            best[f"{key}_warm"] = min(best[f"{key}_warm"], open_seconds(entry, verify))
            if can_evict:
                evict(entry)
                best[f"{key}_cold"] = min(best[f"{key}_cold"], open_seconds(entry, verify))
    hits = {"hit_size": float("inf"), "hit_verify": float("inf")}
    for _ in range(args.repeat):
        for verify in (False, True):
            data._open_entry = partial(open_entry, verify=verify)  # what load_blocks calls on a hit
            start = time.perf_counter()
            _, hit = load_blocks(str(corpus), tok, args.block_size, cache_dir=str(cache))
            key = "hit_verify" if verify else "hit_size"
            hits[key] = min(hits[key], time.perf_counter() - start)
            assert hit.from_cache
    data._open_entry = open_entry
    print(f"(a) sizes only, warm        {best['size_warm']:7.3f} s   (the anchor)")
    print(f"(b) verified,   warm        {best['verify_warm']:7.3f} s   (b)/(a) {best['verify_warm'] / best['size_warm']:.1f}x, "
          f"+{best['verify_warm'] - best['size_warm']:.3f} s, {entry_mb / best['verify_warm']:.0f} MB/s")  # fmt: skip
    if can_evict:
        print(f"(a) sizes only, cold        {best['size_cold']:7.3f} s")
        print(f"(b) verified,   cold        {best['verify_cold']:7.3f} s   (b)/(a) {best['verify_cold'] / best['size_cold']:.1f}x, "
              f"+{best['verify_cold'] - best['size_cold']:.3f} s")  # fmt: skip
    print(f"cache hit   load_blocks, warm: sizes only {hits['hit_size']:.3f} s, verified {hits['hit_verify']:.3f} s "
          f"(both hash the corpus for the key)")  # fmt: skip
    out = {
        "cpu": record(),
        "cpus": os.cpu_count(),
        "corpus_mb": round(size / 1e6, 1),
        "entry_mb": round(entry_mb, 1),
        "block_size": args.block_size,
        "repeat": args.repeat,
        "build_s": round(built.seconds, 3),
        **{f"{k}_s": round(v, 4) for k, v in hits.items()},
        **{f"{k}_s": round(v, 4) for k, v in best.items()},
        "ratio_warm": round(best["verify_warm"] / best["size_warm"], 2),
        **({"ratio_cold": round(best["verify_cold"] / best["size_cold"], 2)} if can_evict else {}),
    }
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
