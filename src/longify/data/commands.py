"""``longify data list | download | stats``: argument declarations and the thin runners behind them."""

from __future__ import annotations

import argparse

from longify.catalog.names import data_dir
from longify.catalog.registry import load_registry
from longify.data.store import download, status
from longify.fileio import nearest_existing
from longify.locks import output_lock


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir", default=None, help="data dir (default: $LONGIFY_DATA, else ~/.cache/longify/data)"
    )
    p.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="FILE",
        help="a JSON registry (same schema as the built-in one) whose entries add to or replace it; repeatable",
    )


def add_list(p: argparse.ArgumentParser) -> None:
    _add_common(p)


def run_list(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)
    root = data_dir(args.dir)
    print(f"data dir: {root}")
    for name in registry.names():
        ds = registry.datasets[name]
        state = status(ds, root)
        aliases = f" (also: {', '.join(ds.aliases)})" if ds.aliases else ""
        print(f"{name}{aliases}: {_size(ds.size)}, {state}; {ds.description}")
        print(f"    license: {ds.license}")
    return 0


def add_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NAME", help="datasets to download (see `longify data list`)")
    _add_common(p)
    p.add_argument(
        "--mirror",
        default=None,
        metavar="BASE_URL",
        help="try BASE_URL/<file name> before the registry's URLs",
    )
    p.add_argument("--verify", action="store_true", help="re-hash datasets already present")
    p.add_argument("--dry-run", action="store_true", help="show URLs, sizes and checksums; download nothing")
    p.add_argument("--retries", type=int, default=3, help="retries per URL (exponential backoff)")


def run_download(args: argparse.Namespace) -> int:
    registry = load_registry(args.registry)
    root = data_dir(args.dir)
    if args.dry_run:
        for name in dict.fromkeys(registry.get(n).name for n in args.names):
            ds = registry.datasets[name]
            print(f"{name} -> {root / name} ({_size(ds.size)}; license: {ds.license})")
            for f in ds.required():
                urls = ([f"{args.mirror.rstrip('/')}/{f.name}"] if args.mirror else []) + list(f.urls)
                print(f"  {f.name}: {f.bytes} bytes, {f.kind}, sha256 {f.sha256}")
                for url in urls:
                    print(f"    {url}")
                print(f"    checksum from: {f.checksum_source}")
        return 0
    nearest_existing(
        root
    )  # a link loop as --dir: one line naming it (a read-only one may hold all asked for)
    for result in download(
        args.names, args.dir, registry=registry, mirror=args.mirror, verify=args.verify, retries=args.retries
    ):
        if result.action == "downloaded":
            resumed = sum(s.resumed_from for s in result.fetched.values())
            extra = f", resumed {resumed} bytes" if resumed else ""
            print(f"{result.name}: downloaded to {result.path} ({result.received} bytes received{extra})")
            print(f"    license: {result.license}")
        else:
            print(f"{result.name}: {result.action} in {result.path}")
    return 0


def add_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="QA task name (xquad, squad, mlqa, tydiqa, triviaqa, json)")
    p.add_argument(
        "--path", default=None, help="file or folder (default: the dataset's folder in the data dir)"
    )
    p.add_argument(
        "--tokenizer", action="append", required=True, help="tokenizer folder or hub id; repeat to compare"
    )
    p.add_argument("--languages", default=None, help="comma-separated languages (default: all present)")
    p.add_argument("--split", default=None, help="split of a folder-style dataset (default: the task's)")
    p.add_argument("--out", default="data-stats", help="folder for stats.{md,csv,json} and PNG plots")


def run_stats(args: argparse.Namespace) -> int:
    from longify.data.stats import _markdown, dataset_stats, write_stats

    languages = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else None
    with output_lock(args.out):  # before the tokenizing: a second `data stats` into --out is refused
        rows = dataset_stats(
            args.dataset, args.tokenizer, path=args.path, languages=languages, split=args.split
        )
        written = write_stats(rows, args.out)
    print(_markdown(rows), end="")
    print(f"written: {', '.join(str(p) for p in written)}")
    return 0
