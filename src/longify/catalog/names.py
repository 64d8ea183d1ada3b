"""Registered datasets by name: where the data dir is, whether a dataset is downloaded in it (its manifest),
and the folder or file a dataset name stands for where a path is expected (``--predict_file xquad``,
``--train_file_path wikitext-103``). The stages resolve names here; ``longify.data`` downloads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from longify.catalog.registry import Registry, load_registry
from longify.errors import LongifyError

MANIFEST = ".longify-manifest.json"


def data_dir(folder: str | Path | None = None) -> Path:
    """``folder``, else ``$LONGIFY_DATA``, else ``~/.cache/longify/data``."""
    if folder:
        return Path(folder).expanduser()
    env = os.environ.get("LONGIFY_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "longify" / "data"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("contents"), dict) else None


def dataset_path(
    name: str, folder: str | Path | None = None, registry: Registry | None = None
) -> Path | None:
    """The folder to give loaders for dataset ``name`` (a registry name or alias) in the data dir; None when
    ``name`` is not in the registry. A registered dataset that is not downloaded is one line with the command
    that downloads it."""
    registry = registry or load_registry()
    ds = registry.lookup(name)
    if ds is None:
        return None
    root = data_dir(folder)
    if read_manifest(root / ds.name) is None:
        raise LongifyError(
            f"dataset {name} is not downloaded in {root}; run: longify data download {ds.name} --dir {root}"
        )
    return root / ds.name / ds.root if ds.root else root / ds.name


def resolve_named(path: str | None, dataset: str | None = None) -> str | None:
    """Names where paths go: ``path`` when it exists (paths keep working), the data-dir folder of dataset
    ``path`` when that is a registered name, or of ``dataset`` when no path is given; else ``path``."""
    if path is not None:
        if os.path.exists(path):
            return path
        found = dataset_path(path)
        return str(found) if found is not None else path
    if dataset:
        found = dataset_path(dataset)
        return str(found) if found is not None else None
    return None


# the file of each split in a text corpus folder (WikiText's wiki.{train,valid,test}.raw)
TEXT_SPLITS = {"train": ("train",), "validation": ("valid", "validation", "dev"), "test": ("test",)}


def resolve_text_files(spec: str | None, split: str) -> str | None:
    """``--train_file_path wikitext-103`` / ``--val_file_path wikitext-103``: a registered corpus name
    becomes its split's file in the data dir (``wiki.train.raw`` / ``wiki.valid.raw``); existing paths and
    anything else stay as given (comma-separated lists item by item)."""
    if not spec:
        return spec
    out = []
    for item in spec.split(","):
        folder = None if os.path.exists(item) else dataset_path(item)
        if folder is None:
            out.append(item)
            continue
        names = TEXT_SPLITS[split]
        found = sorted(f for f in folder.iterdir() if f.is_file() and any(f".{n}." in f.name for n in names))
        if len(found) != 1:
            raise LongifyError(
                f"{item}: expected one {split} file (*.{'|'.join(names)}.*) in {folder}, found {len(found)}"
            )
        out.append(str(found[0]))
    return ",".join(out)
