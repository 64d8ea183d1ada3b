"""Downloads into the data dir: each dataset in its own folder with a manifest (``longify.catalog.names``
says where the data dir is and finds a dataset's folder by name).

``DIR/NAME/`` appears whole or not at all: files are downloaded into ``DIR/.downloads/NAME/`` (partial files
resume there, one per dataset and file entry, so datasets whose files share a name never mix), then copied
or unpacked into a temporary folder that is renamed to ``DIR/NAME``. The manifest ``DIR/NAME/.longify-manifest.json`` records the registry checksums it was made from and, for every
file in the folder, its size, mtime and SHA-256: a dataset whose files still have the recorded size and
mtime is present and verified without reading them (``--verify`` re-hashes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longify.catalog.names import MANIFEST, data_dir, read_manifest
from longify.catalog.registry import Dataset, FileEntry, Registry, load_registry
from longify.data.fetch import FetchStats, fetch_file
from longify.data.unpack import unpack
from longify.fileio import file_sha256
from longify.locks import output_lock
from longify.outdir import atomic_output_dir

logger = logging.getLogger(__name__)

DOWNLOADS = ".downloads"


def status(ds: Dataset, root: Path, *, rehash: bool = False) -> str:
    """``absent``, ``present`` (the recorded files unchanged), ``changed`` (a file differs from the
    manifest) or ``outdated`` (made from other checksums than the registry's)."""
    folder = root / ds.name
    manifest = read_manifest(folder)
    if manifest is None:
        return "absent"
    recorded = manifest.get("files", {})
    if any(recorded.get(f.name, {}).get("sha256") != f.sha256 for f in ds.required()):
        return "outdated"
    for rel, info in manifest["contents"].items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            return "changed"
        if st.st_size != info.get("bytes"):
            return "changed"
        if rehash:
            if file_sha256(path) != info.get("sha256"):
                return "changed"
        elif st.st_mtime_ns != info.get("mtime_ns"):
            return "changed"
    return "present"


def _urls(entry: FileEntry, mirror: str | None) -> list[str]:
    return ([f"{mirror.rstrip('/')}/{entry.name}"] if mirror else []) + list(entry.urls)


def _contents(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST:
            st = path.stat()
            rel = path.relative_to(folder).as_posix()
            out[rel] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}
    return out


@dataclass
class DownloadResult:
    """What ``download`` did for one dataset: ``present`` (nothing to do), ``verified`` (re-hashed),
    ``downloaded`` or ``planned`` (dry run); the bytes received and resumed per file."""

    name: str
    action: str
    path: Path
    license: str
    fetched: dict[str, FetchStats] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return sum(s.received for s in self.fetched.values())


def _fetch_all(ds: Dataset, downloads: Path, mirror: str | None, retries: int, progress: bool) -> dict:
    """Fetch every required file of ``ds`` into ``downloads`` (a file already there and intact is kept)."""
    fetched: dict[str, FetchStats] = {}
    for entry in ds.required():
        fetched[entry.name] = fetch_file(
            _urls(entry, mirror),
            downloads / entry.name,
            sha256=entry.sha256,
            size=entry.bytes,
            retries=retries,
            progress=progress,
        )
    return fetched


def _build(ds: Dataset, downloads: Path, out: Path) -> None:
    """Place every downloaded file (copied, or unpacked when it is an archive) into ``out`` atomically."""
    with atomic_output_dir(out, overwrite=True) as tmp:
        for entry in ds.required():
            src = downloads / entry.name
            if entry.archive:
                unpack(src, tmp, entry.kind)
            else:
                shutil.copyfile(src, tmp / entry.name)
        manifest = {
            "dataset": ds.name,
            "license": ds.license,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {e.name: {"sha256": e.sha256, "bytes": e.bytes} for e in ds.required()},
            "contents": _contents(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    for entry in ds.required():
        with contextlib.suppress(OSError):
            (downloads / entry.name).unlink()
    with contextlib.suppress(OSError):
        downloads.rmdir()  # only when empty


def download(
    names: list[str],
    folder: str | Path | None = None,
    *,
    registry: Registry | None = None,
    mirror: str | None = None,
    verify: bool = False,
    dry_run: bool = False,
    retries: int = 3,
    progress: bool = True,
) -> list[DownloadResult]:
    """Download, check and unpack the datasets ``names`` into the data dir; a dataset already present is
    a no-op without a request (``verify``: re-hash its files first, and download it again if they differ)."""
    registry = registry or load_registry()
    root = data_dir(folder)
    datasets = list({ds.name: ds for ds in (registry.get(n) for n in names)}.values())
    results = []
    for ds in datasets:
        out = root / ds.name
        if dry_run:
            results.append(DownloadResult(ds.name, "planned", out, ds.license))
            continue
        state = status(ds, root, rehash=verify)
        if state == "present":
            results.append(DownloadResult(ds.name, "verified" if verify else "present", out, ds.license))
            continue
        if state != "absent":
            logger.warning("%s: %s in %s; downloading it again", ds.name, state, out)
        with output_lock(out):
            downloads = root / DOWNLOADS / ds.name
            fetched = _fetch_all(ds, downloads, mirror, retries, progress)
            _build(ds, downloads, out)
        results.append(DownloadResult(ds.name, "downloaded", out, ds.license, fetched))
    return results
