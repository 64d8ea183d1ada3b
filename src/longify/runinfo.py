"""Provenance for run directories: library versions, git hash, timestamps."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import longify

_LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "safetensors", "accelerate")


def library_versions() -> dict[str, str]:
    """Versions of Python, longify and the libraries whose behaviour the results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "longify": longify.__version__}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_hash() -> str | None:
    """The git commit of the longify checkout in use, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file at ``path``, read in chunks (never whole into memory; hashlib releases the GIL)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place (mode from the umask,
    as a plain ``open`` would give, not mkstemp's 0600)."""
    from longify.outdir import current_umask, write_failure

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise (write_failure(err, path) or err) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException as err:
        failure = write_failure(err, path)  # the old file at ``path``, if any, is left as it was
        Path(tmp).unlink(missing_ok=True)
        if failure is not None:
            raise failure from None
        raise
