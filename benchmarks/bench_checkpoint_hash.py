"""What the SHA-256 of every checkpoint file (``longify_checkpoint.json``) costs against the save itself.

Writes a model file and an optimizer file of random bytes (base size: 500 MB of weights, 1 GB of Adam
state) into a temporary folder with ``torch.save`` + fsync (the anchor: what a checkpoint save does), then
hashes them with longify's own ``files_sha256`` (``hashlib.file_digest``: 256 KiB reads, never a whole file
in memory; the files side by side, one thread per core): once right after the save (page cache warm: the cost at save time) and once after evicting the
files' pages (``posix_fadvise DONTNEED``, these files only: the cost at resume, when the disk is read again).

    .venv/bin/python benchmarks/bench_checkpoint_hash.py            # 500 MB + 1000 MB (needs ~3 GB RAM, 1.5 GB disk)
    .venv/bin/python benchmarks/bench_checkpoint_hash.py --quick    # 20 MB + 40 MB smoke run
    .venv/bin/python benchmarks/bench_checkpoint_hash.py --mb-model 1400 --mb-optimizer 2800 --dir /scratch

Times are the minimum over ``--repeat`` runs; the ratio is hash / save of the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from longify.cpu import cpu_info
from longify.fileio import files_sha256

MB = 1_000_000


def _save(tensor: torch.Tensor, path: Path) -> float:
    """Seconds to ``torch.save`` ``tensor`` to ``path`` and fsync it (what is on the disk when it returns)."""
    start = time.perf_counter()
    torch.save(tensor, path)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return time.perf_counter() - start


def evict(path: Path) -> bool:
    """Drop ``path``'s pages from the page cache (this file only); False where the OS cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def _hash(paths: list[Path]) -> float:
    start = time.perf_counter()
    files_sha256(paths[0].parent, [p.name for p in paths])
    return time.perf_counter() - start


def run(mb_model: int, mb_optimizer: int, repeat: int, folder: str | None) -> dict[str, float]:
    """The minimum seconds of each phase over ``repeat`` runs, with the files' total size in MB."""
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "model.safetensors": torch.randint(0, 256, (mb_model * MB,), dtype=torch.uint8, generator=gen),
        "optimizer.pt": torch.randint(0, 256, (mb_optimizer * MB,), dtype=torch.uint8, generator=gen),
    }
    best = {"save": float("inf"), "hash_warm": float("inf"), "hash_cold": float("inf")}
    with tempfile.TemporaryDirectory(dir=folder, prefix="bench-ckpt-hash-") as tmp:
        paths = [Path(tmp) / name for name in tensors]
        for _ in range(repeat):
            for p in paths:
                p.unlink(missing_ok=True)
            best["save"] = min(
                best["save"], sum(_save(t, p) for p, t in zip(paths, tensors.values(), strict=True))
            )
            best["hash_warm"] = min(best["hash_warm"], _hash(paths))
            if all(evict(p) for p in paths):
                best["hash_cold"] = min(best["hash_cold"], _hash(paths))
        size = sum(p.stat().st_size for p in paths) / MB
    return {**best, "mb": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb-model", type=int, default=500, help="size of the weights file (MB)")
    parser.add_argument("--mb-optimizer", type=int, default=1000, help="size of the optimizer file (MB)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the minimum of each phase is reported")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 MB + 40 MB")
    args = parser.parse_args()
    if args.quick:
        args.mb_model, args.mb_optimizer = 20, 40
    r = run(args.mb_model, args.mb_optimizer, args.repeat, args.dir)
    print(f"{cpu_info().describe()}, {os.cpu_count()} cores; torch {torch.__version__}")
    print(f"files: {args.mb_model} MB model + {args.mb_optimizer} MB optimizer = {r['mb']:.0f} MB")
    print(f"save (torch.save + fsync), the anchor: {r['save']:7.2f} s  ({r['mb'] / r['save']:6.0f} MB/s)")
    print(f"sha256, page cache warm (at save):     {r['hash_warm']:7.2f} s  ({r['mb'] / r['hash_warm']:6.0f} MB/s)"
          f"  hash/save {r['hash_warm'] / r['save']:.2f}")  # fmt: skip
    if r["hash_cold"] != float("inf"):
        print(f"sha256, pages evicted (at resume):     {r['hash_cold']:7.2f} s  ({r['mb'] / r['hash_cold']:6.0f} MB/s)"
              f"  hash/save {r['hash_cold'] / r['save']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
