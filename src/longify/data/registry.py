"""The dataset registry: data, not code. ``registry.json`` ships in the package; ``--registry FILE`` (same
schema) adds or replaces entries. Every entry is checked when loaded, so a bad file is one line, not a
KeyError in the middle of a download."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longify.errors import LongifyError

BUILTIN = Path(__file__).with_name("registry.json")
KINDS = ("json", "txt", "raw", "zip", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz")
ARCHIVES = ("zip", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class FileEntry:
    """One downloadable file: its URLs in the order tried, exact size and SHA-256, and how to unpack it."""

    name: str
    urls: tuple[str, ...]
    bytes: int
    sha256: str
    kind: str
    members: tuple[str, ...] = ()
    optional: bool = False
    checksum_source: str = ""

    @property
    def archive(self) -> bool:
        return self.kind in ARCHIVES


@dataclass(frozen=True)
class Dataset:
    """A dataset: its files, license, the other names it answers to, and ``root``, the folder inside the
    dataset's directory that loaders are given."""

    name: str
    description: str
    license: str
    files: tuple[FileEntry, ...]
    homepage: str = ""
    aliases: tuple[str, ...] = ()
    root: str = ""

    def required(self) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if not f.optional)

    @property
    def size(self) -> int:
        return sum(f.bytes for f in self.required())


@dataclass
class Registry:
    datasets: dict[str, Dataset] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.datasets)

    def lookup(self, name: str) -> Dataset | None:
        """The dataset called ``name`` or one of its aliases (None when there is none)."""
        if name in self.datasets:
            return self.datasets[name]
        for ds in self.datasets.values():
            if name in ds.aliases:
                return ds
        return None

    def get(self, name: str) -> Dataset:
        ds = self.lookup(name)
        if ds is None:
            raise LongifyError(f"dataset {name!r}: not in the registry; choose from {self.names()}")
        return ds


def _need(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise LongifyError(f"{where}: missing field {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise LongifyError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _file(entry: Any, where: str) -> FileEntry:
    if not isinstance(entry, dict):
        raise LongifyError(f"{where}: expected an object")
    name = _need(entry, "name", str, where)
    if not _NAME.fullmatch(name):
        raise LongifyError(f"{where}.name: {name!r} is not a plain file name")
    urls = _need(entry, "urls", list, where)
    if not urls or not all(isinstance(u, str) and re.match(r"(https?|file)://", u) for u in urls):
        raise LongifyError(f"{where}.urls: expected a non-empty list of http(s):// or file:// URLs")
    size = _need(entry, "bytes", int, where)
    if size < 0:
        raise LongifyError(f"{where}.bytes: expected a size >= 0, got {size}")
    sha = _need(entry, "sha256", str, where).lower()
    if not _SHA256.fullmatch(sha):
        raise LongifyError(f"{where}.sha256: expected 64 hex digits, got {sha!r}")
    kind = _need(entry, "kind", str, where)
    if kind not in KINDS:
        raise LongifyError(f"{where}.kind: expected one of {list(KINDS)}, got {kind!r}")
    return FileEntry(
        name,
        tuple(urls),
        size,
        sha,
        kind,
        tuple(entry.get("members", ())),
        bool(entry.get("optional", False)),
        str(entry.get("checksum_source", "")),
    )


def _dataset(name: str, entry: Any, where: str) -> Dataset:
    if not _NAME.fullmatch(name):
        raise LongifyError(f"{where}: {name!r} is not a plain dataset name")
    if not isinstance(entry, dict):
        raise LongifyError(f"{where}: expected an object")
    files = _need(entry, "files", list, where)
    if not files:
        raise LongifyError(f"{where}.files: expected at least one file")
    parsed = tuple(_file(f, f"{where}.files[{i}]") for i, f in enumerate(files))
    names = [f.name for f in parsed]
    if len(set(names)) != len(names):
        raise LongifyError(f"{where}.files: file names repeat ({names})")
    root = str(entry.get("root", ""))
    if root.startswith("/") or ".." in Path(root).parts:
        raise LongifyError(f"{where}.root: expected a relative folder, got {root!r}")
    return Dataset(
        name,
        str(entry.get("description", "")),
        _need(entry, "license", str, where),
        parsed,
        str(entry.get("homepage", "")),
        tuple(entry.get("aliases", ())),
        root,
    )


def parse_registry(data: Any, where: str) -> dict[str, Dataset]:
    """The datasets of a registry document (``{"datasets": {name: entry}}``), each checked."""
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise LongifyError(f"{where}: expected an object with a 'datasets' object")
    return {n: _dataset(n, e, f"{where}: datasets.{n}") for n, e in data["datasets"].items()}


def read_registry_file(path: str | Path) -> dict[str, Dataset]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LongifyError(f"--registry {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LongifyError(f"--registry {path}: not a readable JSON file ({err})") from None
    return parse_registry(data, str(path))


def load_registry(extra: Sequence[str | Path] | str | Path | None = None) -> Registry:
    """The built-in registry, with the entries of each ``extra`` file added or replacing (later wins).
    ``$LONGIFY_REGISTRY`` (files separated by ``:``) is read before ``extra``."""
    datasets = dict(read_registry_file(BUILTIN))
    files: list[str | Path] = [p for p in os.environ.get("LONGIFY_REGISTRY", "").split(os.pathsep) if p]
    if isinstance(extra, str | Path):
        files.append(extra)
    elif extra:
        files.extend(extra)
    for path in files:
        datasets.update(read_registry_file(path))
    return Registry(datasets)
