"""The dataset registry: data, not code. ``registry.json`` ships in the package; ``--registry FILE`` (same
schema) adds or replaces entries. Every file is checked against ``registry.schema.json`` (JSON Schema draft
2020-12, which documents each field) when loaded, so a bad file is one line per problem, not a KeyError in
the middle of a download."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longify.errors import LongifyError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

BUILTIN = Path(__file__).with_name("registry.json")
SCHEMA = Path(__file__).with_name("registry.schema.json")  # the format, documented field by field
# the file kinds (all of them: the schema's ``kind`` enum) that are unpacked rather than copied
ARCHIVES = ("zip", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz")


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


def _json_path(path: Iterable[str | int]) -> str:
    """``datasets.squad.files[0].members`` for the path ``("datasets", "squad", "files", 0, "members")``;
    a key that is not a plain name is quoted (``datasets["my data"]``)."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif not re.fullmatch(r"[A-Za-z0-9_$][A-Za-z0-9._-]*", key):
            out += f"[{json.dumps(key)}]"
        else:
            out += f".{key}" if out else key
    return out


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # (not imported by what never loads a registry)

    return Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def _sort_key(key: str | int) -> tuple[int, int, str]:
    return (0, key, "") if isinstance(key, int) else (1, 0, key)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_errors(data: Any, where: str) -> list[str]:
    """One line per violation of ``registry.schema.json``: ``WHERE: JSON.PATH: what is wrong``, sorted by
    path (``files[2]`` before ``files[10]``). A pattern's regular expression is replaced by the field's
    description, which says it in words."""
    lines = []
    errors = sorted(_validator().iter_errors(data), key=lambda e: [_sort_key(k) for k in e.absolute_path])
    for err in errors:
        message = err.message
        if err.validator == "pattern" and isinstance(err.schema, dict) and err.schema.get("description"):
            message = f"{err.instance!r} does not match: {err.schema['description']}"
        path = _json_path(err.absolute_path)
        lines.append(_clip(f"{where}: {path}: {message}" if path else f"{where}: {message}"))
    return lines


def _file(entry: dict[str, Any]) -> FileEntry:
    """A file entry that the schema has accepted."""
    return FileEntry(
        entry["name"],
        tuple(entry["urls"]),
        int(entry["bytes"]),  # the schema takes 10.0 for an integer
        entry["sha256"].lower(),
        entry["kind"],
        tuple(entry.get("members", ())),
        entry.get("optional", False),
        entry.get("checksum_source", ""),
    )


def _dataset(name: str, entry: dict[str, Any], where: str) -> Dataset:
    """A dataset entry that the schema has accepted, with the checks a schema cannot make."""
    files = tuple(_file(f) for f in entry["files"])
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise LongifyError(f"{where}.files: file names repeat ({names})")
    root = entry.get("root", "")
    if root.startswith("/") or ".." in Path(root).parts:
        raise LongifyError(f"{where}.root: expected a relative folder, got {root!r}")
    return Dataset(
        name,
        entry.get("description", ""),
        entry["license"],
        files,
        entry.get("homepage", ""),
        tuple(entry.get("aliases", ())),
        root,
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def check_names(added: dict[str, Dataset], where: str, existing: dict[str, Dataset] | None = None) -> None:
    """Refuse a dataset name or alias in ``added`` that is already another dataset's name or alias, within
    ``added`` or among ``existing`` (the registry it is added to; a dataset replaced by name does not count)."""
    taken: dict[str, str] = {}  # name or alias -> the dataset it names
    for ds in (existing or {}).values():
        if ds.name not in added:
            for n in (ds.name, *ds.aliases):
                taken[n] = ds.name
    for ds in added.values():
        for field_, n in [("", ds.name), *((".aliases", a) for a in ds.aliases)]:
            other = taken.get(n)
            if other is not None and other != ds.name:
                raise LongifyError(
                    f"{where}: datasets.{ds.name}{field_}: {n!r} is already a name of dataset {other!r}"
                )
            taken[n] = ds.name


def parse_registry(data: Any, where: str) -> dict[str, Dataset]:
    """The datasets of a registry document (``{"datasets": {name: entry}}``), checked against
    ``registry.schema.json`` (every violation listed, one line each) and then for what a schema cannot say."""
    if errors := schema_errors(data, where):
        raise LongifyError("\n".join(errors))
    datasets = {n: _dataset(n, e, f"{where}: datasets.{n}") for n, e in data["datasets"].items()}
    check_names(datasets, where)
    return datasets


def read_registry_file(path: str | Path) -> dict[str, Dataset]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except FileNotFoundError:
        raise LongifyError(f"--registry {path}: file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
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
        added = read_registry_file(path)
        check_names(added, str(path), datasets)
        datasets.update(added)
    return Registry(datasets)
