"""Provenance for run directories: library versions, git hash, timestamps."""

from __future__ import annotations

import functools
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

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


@functools.cache
def git_hash() -> str | None:
    """The git commit of the longify checkout in use, or None outside a git checkout (asked once per process)."""
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
