"""Benchmark: the masked-LM data pipeline against the bare fast tokenizer, in the same run.

    .venv/bin/python benchmarks/bench_mlm_data.py            # ~100 MB corpus (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_mlm_data.py --mb 5     # quick check

Writes a WikiText-layout corpus of ``--mb`` MB (the synthetic encyclopedia of longify.demo, one seed per
chunk), trains a byte-level BPE tokenizer (RoBERTa family, 8000 ids) on a sample, then measures
(a) the anchor: tokens/s of ``backend_tokenizer.encode_batch`` over the same text units in batches of 1000
    (all cores, as the tokenizer does by default; ``encode_batch_fast`` shown too);
(b) ``load_blocks`` cold (empty cache): tokens/s of read + hash + tokenize + group + save;
(c) ``load_blocks`` warm (cache hit): seconds.
Target: (b) / (a) >= 0.8.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from longify.cpu import cpu_info
from longify.demo.corpus import wikitext
from longify.mlm.data import load_blocks, read_text_units
from longify.tiny import train_tokenizer

TARGET = 0.8


def write_corpus(path: Path, mb: float) -> int:
    """A WikiText-layout file of about ``mb`` MB; returns its size in bytes."""
    target, seed = int(mb * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while f.tell() < target:
            f.write(wikitext(200, seed=seed))
            seed += 1
    return path.stat().st_size


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its children that have finished."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bare_rate(backend, units: list[str], fast: bool = False, batch: int = 1000) -> tuple[float, int, float]:
    """(tokens/s, tokens, CPU seconds) of the backend tokenizer alone over ``units``."""
    encode = backend.encode_batch_fast if fast else backend.encode_batch
    t0, c0, n = time.perf_counter(), cpu_seconds(), 0
    for i in range(0, len(units), batch):
        n += sum(len(e) for e in encode(units[i : i + batch], add_special_tokens=False))
    return n / (time.perf_counter() - t0), n, cpu_seconds() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB (default 100)")
    ap.add_argument("--block-size", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--num-proc", type=int, default=None, help="load_blocks num_proc (default: its own)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (a) then (b); medians are reported")
    ap.add_argument("--workdir", default=None, help="keep corpus and cache here (default: a temp dir)")
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-mlm-data-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "wiki.train.raw"
    t0 = time.perf_counter()
    size = write_corpus(corpus, args.mb) if not corpus.exists() else corpus.stat().st_size
    print(f"corpus      {size / 1e6:.1f} MB at {corpus} ({time.perf_counter() - t0:.1f} s)")
    units = read_text_units(str(corpus))
    t0 = time.perf_counter()
    tok = train_tokenizer("roberta", texts=units[:20000], vocab_size=args.vocab)
    print(f"tokenizer   byte-level BPE, {len(tok)} ids, trained in {time.perf_counter() - t0:.1f} s")
    backend = tok.backend_tokenizer
    print(
        f"cpus        {os.cpu_count()} ({cpu_info().describe()}); {len(units)} text units; block size {args.block_size}"
    )

    rows: list[dict[str, float]] = []
    for r in range(args.repeat):
        bare, n_bare, bare_cpu = bare_rate(backend, units)
        fast = bare_rate(backend, units, fast=True)[0]
        cache = work / f"cache-{r}"
        shutil.rmtree(cache, ignore_errors=True)
        c0 = cpu_seconds()
        _, stats = load_blocks(
            str(corpus), tok, args.block_size, cache_dir=str(cache), num_proc=args.num_proc
        )
        assert stats.n_tokens == n_bare, (stats.n_tokens, n_bare)
        cold = stats.n_tokens / stats.seconds
        # each round against its own anchor (others' load on the CPUs changes over time); the CPU-time ratio
        # (tokens per CPU-second, pipeline / bare) does not depend on that load at all
        rows.append(
            {"bare": bare, "fast": fast, "cold": cold, "ratio": cold / bare, "vs_fast": cold / fast,
             "cpu": bare_cpu / (cpu_seconds() - c0)}
        )  # fmt: skip
        print(
            f"round {r}     bare {bare / 1e6:.2f} M tok/s (fast {fast / 1e6:.2f}), load_blocks cold {cold / 1e6:.2f} "
            f"M tok/s ({stats.seconds:.1f} s); ratio {cold / bare:.2f}, vs fast {cold / fast:.2f}, "
            f"per CPU-s {rows[-1]['cpu']:.2f}"
        )
    _, warm = load_blocks(str(corpus), tok, args.block_size, cache_dir=str(cache), num_proc=args.num_proc)
    assert warm.from_cache

    med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    ratio = med["ratio"]
    print(
        f"tokens      {stats.n_tokens} ({stats.n_chars} chars) -> {stats.n_blocks} blocks, tail {stats.n_dropped_tokens}"
    )
    print(
        f"(a) bare encode_batch     {med['bare'] / 1e6:8.2f} M tokens/s  (encode_batch_fast {med['fast'] / 1e6:.2f})"
    )
    print(f"(b) load_blocks cold      {med['cold'] / 1e6:8.2f} M tokens/s")
    print(f"(c) load_blocks warm      {warm.seconds:8.2f} s")
    print(
        f"ratio (b)/(a)             {ratio:8.2f}x  median of {len(rows)} rounds; target >= {TARGET}x: "
        f"{'ok' if ratio >= TARGET else 'BELOW'}"
    )
    print(
        f"also                      vs encode_batch_fast {med['vs_fast']:.2f}x; per CPU-second {med['cpu']:.2f}x"
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
