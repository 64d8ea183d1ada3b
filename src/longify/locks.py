"""Advisory locks on output folders, so that two runs never write into one folder at the same time.

A folder ``OUT`` is locked through ``.OUT.lock`` beside it (``OUT/.longify.lock`` inside it when its
parent is not writable): ``fcntl.flock`` decides who holds it, the file only says who (PID, host,
command) for the refusal message. The kernel drops the lock when its holder dies, so a stale lock file of
a killed process is simply taken over; the holder removes the file when it is done. Within one process the
lock is re-entrant (a command may lock a folder that one of its callers already holds). Under a
distributed launch only rank 0 locks: the other ranks of the same launch work on the same folders.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from longify.errors import LongifyError

logger = logging.getLogger(__name__)

INSIDE_NAME = ".longify.lock"  # the lock file's name inside a folder whose parent is read-only
_HELD: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth) of the locks this process holds
_P = ParamSpec("_P")
_R = TypeVar("_R")


def launch_rank() -> int:
    """This process's rank in a torchrun / accelerate launch (``RANK``, else ``LOCAL_RANK``); 0 otherwise."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return 0


def lock_path(folder: str | Path) -> Path:
    """Where ``folder``'s lock lives: ``.NAME.lock`` beside it, or inside it when the parent is read-only."""
    folder = Path(os.path.abspath(folder))
    parent = folder.parent
    if folder.is_dir() and parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        return folder / INSIDE_NAME
    return parent / f".{folder.name}.lock"


def holder_of(path: str | Path) -> dict[str, Any]:
    """What the lock file says about its holder (``{}`` while the holder has not written it yet)."""
    for _ in range(10):  # the holder writes right after taking the lock
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text:
            try:
                data = json.loads(text)
                return data if isinstance(data, dict) else {}
            except json.JSONDecodeError:
                return {}
        time.sleep(0.05)
    return {}


def lock_holder(folder: str | Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now (``holder_of``'s answer), or None when nobody does. Only looks: it
    creates no file and holds nothing past the call."""
    path = lock_path(folder)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder_of(path)
    except OSError:
        return None  # no locks on this file system
    finally:
        os.close(fd)  # (drops the shared lock, if we got it)
    return None


def describe(holder: dict[str, Any]) -> str:
    """``pid 123 on host: longify convert ...`` (one line)."""
    if not holder:
        return "pid unknown"
    command = " ".join(str(holder.get("command", "")).split())[:200]
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" + (f": {command}" if command else "")


def _open_locked(path: Path, folder: Path, wait: bool) -> int:
    """An fd holding the flock of ``path`` (the file that is at ``path`` once we hold it)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise LongifyError(f"{folder}: cannot create the lock file {path} ({err.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = holder_of(path)
                if not wait:
                    raise LongifyError(
                        f"{folder}: in use by another longify process ({describe(holder)}); "
                        "wait for it to finish or choose another folder"
                    ) from None
                logger.info("%s: waiting for %s", folder, describe(holder))
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise
            logger.warning("%s: this file system has no locks (%s); not locked", folder, err.strerror)
            return -1
        except BaseException:
            os.close(fd)
            raise
        # the previous holder removes the file before it unlocks: make sure ours is still the one at ``path``
        mine = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


def _write_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["longify" if "longify" in sys.argv[0] else sys.argv[0], *sys.argv[1:]]),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


@contextmanager
def output_lock(
    folder: str | Path, *, wait: bool = False, main_process: bool | None = None
) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; another process holding it -> ``LongifyError`` naming its
    PID (or, with ``wait``, wait for it). Only the launch's rank 0 locks (``main_process`` overrides)."""
    if main_process is None:
        main_process = launch_rank() == 0
    if not main_process:
        yield
        return
    folder = Path(folder)
    from longify.outdir import check_writable  # (outdir imports this module)

    check_writable(folder)  # one line for a read-only folder or a file on the way, before anything is made
    path = lock_path(folder)
    key = str(path)
    if key in _HELD:  # re-entrant within this process
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _HELD[key] = (fd, _HELD[key][1] - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path, folder, wait)
    if fd < 0:
        yield
        return
    _HELD[key] = (fd, 1)
    try:
        _write_holder(fd)
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # while still locked: see _open_locked
        os.close(fd)


def locks_output(where: Callable[..., str | Path]) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: hold the lock of the folder ``where(*args, **kwargs)`` for the whole call."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def locked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with output_lock(where(*args, **kwargs)):
                return fn(*args, **kwargs)

        return locked

    return wrap


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def owner_pid(name: str, marker: str) -> int | None:
    """The PID in a temporary name ``<anything>{marker}<pid>-<random>``, or None."""
    _, sep, rest = name.partition(marker)
    pid = rest.split("-", 1)[0]
    return int(pid) if sep and pid.isdigit() else None


def remove_dead_leftovers(parent: Path, prefix: str, remove: Callable[[Path], None]) -> list[Path]:
    """Call ``remove`` on the entries of ``parent`` named ``{prefix}<pid>-*`` whose PID is not alive here."""
    done = []
    if not parent.is_dir():
        return done
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid = owner_pid(entry.name, prefix)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        logger.info("removing %s, left by process %d that no longer runs", entry, pid)
        remove(entry)
        done.append(entry)
    return done
