"""Verified, resumable downloads.

``requests`` with a small layer of our own: pooch downloads whole files into a temporary file and cannot
continue a partial one, and the study's archives run to gigabytes (TriviaQA rc: 2.7 GB). A partial download
stays beside its target as ``NAME.<first 12 hex digits of its SHA-256>.part`` (so a file of the same name with
other contents never resumes it) and the next attempt (a retry, or the next call) asks for the rest with
``Range: bytes=N-``. The download of a file holds a lock (``.NAME.<sha>.lock`` beside it): a second process
fetching the same file waits, then finds it complete instead of writing into the same partial file. URLs are
tried in order; each is retried with exponential backoff on connection errors, cut transfers and 5xx
answers; a 4xx answer moves on to the next URL at once. The file is renamed into place only once its size
and SHA-256 match the registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tqdm.auto import tqdm

from longify.console import is_quiet
from longify.errors import LongifyError
from longify.fileio import file_sha256
from longify.locks import output_lock

logger = logging.getLogger(__name__)

CHUNK = 1 << 16  # what a cut transfer can lose at most (urllib3 drops an incomplete read)
TIMEOUT = (15.0, 60.0)  # connect, read (seconds)


@dataclass
class FetchStats:
    """What a download cost: bytes received over the network, bytes kept from an earlier partial file,
    and the URLs that failed before one succeeded."""

    received: int = 0
    resumed_from: int = 0
    requests: int = 0
    url: str | None = None
    failures: list[str] = field(default_factory=list)


class _Retry(Exception):
    """A transient failure: try the same URL again (resuming)."""


class _NextURL(Exception):
    """This URL cannot serve the file: try the next one."""


def part_path(dest: str | Path, sha256: str) -> Path:
    """Where the partial download of ``dest`` with this SHA-256 lives: ``NAME.<sha256[:12]>.part`` beside it."""
    dest = Path(dest)
    return dest.with_name(f"{dest.name}.{sha256[:12].lower()}.part")


def _lock_key(dest: Path, sha256: str) -> Path:
    """The name whose lock (``.NAME.<sha256[:12]>.lock``) guards the download of ``dest``; never a file itself."""
    return dest.with_name(f"{dest.name}.{sha256[:12].lower()}")


def _complete(dest: Path, size: int, sha256: str) -> bool:
    """Whether ``dest`` is already there with the expected size and SHA-256."""
    return dest.is_file() and dest.stat().st_size == size and file_sha256(dest) == sha256


def _short(url: str) -> str:
    return url if len(url) < 120 else url[:117] + "..."


def _file_url(url: str, part: Path, size: int) -> int:
    """A ``file://`` URL (a local mirror): copy it. Returns the bytes copied."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if not source.is_file():
        raise _NextURL(f"{url}: file not found")
    shutil.copyfile(source, part)
    return part.stat().st_size


def _transfer(
    session: requests.Session, url: str, part: Path, size: int, stats: FetchStats, progress: bool, label: str
) -> None:
    """One request for the rest of ``part`` (resumed from its current length)."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size and size > 0:
        return  # complete: the checksum decides
    headers = {"Range": f"bytes={have}-"} if have else {}
    stats.requests += 1
    try:
        response = session.get(url, headers=headers, stream=True, timeout=TIMEOUT, allow_redirects=True)
    except requests.RequestException as err:
        raise _Retry(f"{_short(url)}: {type(err).__name__}") from None
    with response:
        if response.status_code == 416 and have:  # nothing left to send, or a stale part
            part.unlink()
            raise _Retry(f"{_short(url)}: range refused; starting over")
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"{_short(url)}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _NextURL(f"{_short(url)}: HTTP {response.status_code}")
        if have and response.status_code == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(have):
                part.unlink()
                raise _Retry(f"{_short(url)}: unexpected Content-Range; starting over")
            mode = "ab"
            stats.resumed_from = have
            logger.info("%s: resuming at byte %d of %d", label, have, size)
        else:  # 200: the server sends the whole file
            mode, have = "wb", 0
        response.raw.enforce_content_length = (
            False  # a cut transfer keeps what arrived; the length is ours to check
        )
        bar = tqdm(
            total=size,
            initial=have,
            unit="B",
            unit_scale=True,
            desc=label,
            disable=None if progress and not is_quiet() else True,  # quiet: `longify -q`
        )
        try:
            with open(part, mode) as f:
                for chunk in response.iter_content(CHUNK):
                    f.write(chunk)
                    stats.received += len(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
                    if have > size:
                        raise _NextURL(f"{_short(url)}: more than the expected {size} bytes")
        except requests.RequestException as err:  # a cut connection, a read timeout
            raise _Retry(f"{_short(url)}: transfer cut at byte {have} ({type(err).__name__})") from None
        finally:
            bar.close()
    if have < size:
        raise _Retry(f"{_short(url)}: transfer ended at byte {have} of {size}")


def fetch_file(
    urls: Sequence[str],
    dest: str | Path,
    *,
    sha256: str,
    size: int,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
    session: requests.Session | None = None,
) -> FetchStats:
    """Download ``dest`` from the first of ``urls`` that serves it with the expected size and SHA-256.

    ``part_path(dest, sha256)`` holds the bytes so far and survives failures, so the next call resumes. A
    checksum mismatch removes the file and moves on to the next URL; when no URL succeeds, one line names each
    failure (for a mismatch: the URL, the expected and the got checksum). The whole download holds the lock
    of this file (waiting for another process that holds it); a ``dest`` already complete is not fetched.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    with output_lock(_lock_key(dest, sha256), wait=True, main_process=True):
        if _complete(dest, size, sha256):
            return FetchStats()
        return _fetch_locked(urls, dest, sha256, size, retries, backoff, progress, session)


def _fetch_locked(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    size: int,
    retries: int,
    backoff: float,
    progress: bool,
    session: requests.Session | None,
) -> FetchStats:
    """``fetch_file`` once its lock is held."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest, sha256)
    stats = FetchStats()
    own = session is None
    session = session or requests.Session()
    try:
        for url in urls:
            try:
                for attempt in range(retries + 1):
                    try:
                        if url.startswith("file://"):
                            stats.received += _file_url(url, part, size)
                        else:
                            _transfer(session, url, part, size, stats, progress, dest.name)
                        break
                    except _Retry as why:
                        if attempt == retries:
                            raise _NextURL(f"{why} (after {retries + 1} attempts)") from None
                        wait = backoff * 2**attempt
                        logger.warning("%s; retrying in %.1f s", why, wait)
                        time.sleep(wait)
                got_size = part.stat().st_size
                if got_size != size:
                    part.unlink()
                    raise _NextURL(f"{_short(url)}: size {got_size}, expected {size} (file removed)")
                got = file_sha256(part)
                if got != sha256:
                    part.unlink()
                    raise _NextURL(
                        f"{_short(url)}: sha256 mismatch: expected {sha256}, got {got} (file removed)"
                    )
                os.replace(part, dest)
                stats.url = url
                return stats
            except _NextURL as why:
                stats.failures.append(str(why))
                if url != urls[-1]:  # the last failure is in the error itself: said once
                    logger.warning("%s; trying the next URL", why)
    finally:
        if own:
            session.close()
    with contextlib.suppress(OSError):
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
    raise LongifyError(f"{dest.name}: no URL served it; " + "; ".join(stats.failures))
