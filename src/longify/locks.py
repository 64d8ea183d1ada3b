"""Advisory locks on output folders, so that two runs never write into one folder at the same time.

A folder ``OUT`` is locked through ``.OUT.lock`` beside it (``OUT/.longify.lock`` inside it when its
parent is not writable): ``fcntl.flock`` decides who holds it, the file only says who (PID, host,
command) for the refusal message. The kernel drops the lock when its holder dies, so a stale lock file of
a killed process is simply taken over; the holder removes the file when it is done. Within one process the
lock is re-entrant (a command may lock a folder that one of its callers already holds). Under a
distributed launch only rank 0 locks: the other ranks of the same launch work on the same folders.

Locks nest: a folder inside one that another process holds is refused too (a running ``pretrain`` owns
``OUT/converted``, a ``study run`` its jobs' folders), except for the processes started to work inside it:
``$LONGIFY_LOCKS_ABOVE`` lists the lock files of the folders a process's parents held when they started it
(every holder adds its own for its children: the demo's study, the study's jobs; ``admitting`` gives the
entry to a job started otherwise, as a Slurm job is). The other way round, a folder is replaced
(``--overwrite``) only while no other process holds a lock inside it (see ``held_inside``).
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
from longify.fileio import check_writable, missing_folders, remove_if_empty

logger = logging.getLogger(__name__)

INSIDE_NAME = ".longify.lock"  # the lock file's name inside a folder whose parent is read-only
ABOVE_ENV = "LONGIFY_LOCKS_ABOVE"  # JSON list: lock files of folders this process may lock inside (see _key)
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
    return _probe(lock_path(folder))


def _probe(path: Path) -> dict[str, Any] | None:
    """Who holds the lock file ``path`` now (``holder_of``), or None when nobody does or there is no such
    file. Only looks: it creates nothing and holds nothing past the call."""
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


def _key(path: Path) -> str:
    """One name for a lock file however it is reached: its folder's links resolved."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _above() -> list[str]:
    """The lock files (``_key``) of the folders this process was started to work inside (``ABOVE_ENV``)."""
    try:
        value = json.loads(os.environ.get(ABOVE_ENV) or "[]")
    except json.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def admitting(folder: str | Path) -> dict[str, str]:
    """Environment entries for a process started to work inside ``folder`` (a study's job): it may lock
    folders inside ``folder`` whoever holds ``folder``'s lock then (a later ``study run`` of the study)."""
    folder = Path(os.path.abspath(folder))
    return {ABOVE_ENV: json.dumps(list(dict.fromkeys([*_above(), *map(_key, _candidates(folder))])))}


def _pass_down(key: str, holding: bool) -> None:
    """Add ``key`` to (or take it out of) ``ABOVE_ENV``, for the children started while it is held."""
    keys = [k for k in _above() if k != key] + ([key] if holding else [])
    if keys:
        os.environ[ABOVE_ENV] = json.dumps(keys)
    else:
        os.environ.pop(ABOVE_ENV, None)


def _mine(holder: dict[str, Any]) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def _other_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock file ``path``, unless nobody does, this process does, or this process was
    started to work inside its folder."""
    above = _above()
    if str(path) in _HELD or (above and _key(path) in above):
        return None
    holder = _probe(path)
    return None if holder is None or _mine(holder) else holder


def _candidates(folder: Path) -> tuple[Path, Path]:
    """The two places ``folder``'s lock file may be: beside it, or inside it (a read-only parent)."""
    return folder.parent / f".{folder.name}.lock", folder / INSIDE_NAME


def enclosing_holder(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """A folder that ``folder`` lies in (by its path as given or with its links resolved) whose lock
    another process holds (see ``_other_holder``), with its holder; else None."""
    given = Path(os.path.abspath(folder))
    real = Path(os.path.realpath(given))
    for above in dict.fromkeys([*given.parents, *real.parents]):
        if above == above.parent:
            continue  # the root: nothing locks it
        for path in _candidates(above):
            if (holder := _other_holder(path)) is not None:
                return above, holder
    return None


def held_inside(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """A lock file inside ``folder`` that another process holds (see ``_other_holder``), with its holder;
    else None. Walks the whole tree (links not followed): for a folder about to be replaced, whose
    tree is about to be walked to be deleted anyway."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if (
                name.startswith(".")
                and name.endswith(".lock")
                and (holder := _other_holder(path)) is not None
            ):
                return path, holder
    return None


def _refuse_enclosed(folder: Path) -> None:
    if found := enclosing_holder(folder):
        above, holder = found
        raise LongifyError(
            f"{folder}: inside {above}, which another longify process uses ({describe(holder)}); "
            "wait for it to finish or choose a folder outside it"
        )


def describe(holder: dict[str, Any]) -> str:
    """``pid 123 on host: longify convert ...`` (one line)."""
    if not holder:
        return "pid unknown"
    command = " ".join(str(holder.get("command", "")).split())[:200]
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" + (f": {command}" if command else "")


def _flock_nb(fd: int, tries: int = 4) -> None:
    """``flock(LOCK_EX | LOCK_NB)``, tried again a few times over 0.1 s: another process's look at the
    lock (``_probe``, a shared lock held for microseconds) is no holder."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(0.025)


def _open_locked(path: Path, folder: Path, wait: bool) -> int:
    """An fd holding the flock of ``path`` (the file that is at ``path`` once we hold it)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise LongifyError(f"{folder}: cannot create the lock file {path} ({err.strerror})") from None
        try:
            try:
                _flock_nb(fd)
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
    _refuse_enclosed(folder)  # before anything is made
    made = missing_folders(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _open_locked(path, folder, wait)
    except BaseException:
        remove_if_empty(made)
        raise
    if fd < 0:
        yield
        return
    _HELD[key] = (fd, 1)
    above = _key(path)
    passed = above not in _above()  # (else a parent passed it down already: it stays)
    if passed:
        _pass_down(above, holding=True)
    try:
        _write_holder(fd)
        _refuse_enclosed(folder)  # again, ours held: of two racing (see held_inside), one sees the other
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # while still locked: see _open_locked
        os.close(fd)
        if passed:
            _pass_down(above, holding=False)
        remove_if_empty(made)  # the folders made for the lock file alone (a command refused or failed early)


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
