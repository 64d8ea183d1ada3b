"""File I/O at the bottom of every layer: the umask's modes, atomic writes, SHA-256 of files, whether a
folder can be written, and one-line errors for a write that failed on a full disk, a read-only file system
or a denied permission (``write_failure``). Imports nothing of longify but its errors."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from longify.errors import LongifyError


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so nothing is changed even for a moment)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | Path) -> None:
    """Give a folder made by ``mkdtemp`` (0700) or a file made by ``mkstemp`` (0600) the mode a plain
    ``mkdir`` / ``open`` would have given it: ``0o777 & ~umask`` / ``0o666 & ~umask``."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def honour_umask_tree(root: Path) -> None:
    """``honour_umask`` on ``root`` and everything under it (libraries that write through a temporary file,
    as ``save_pretrained`` does for its safetensors, leave 0600 files behind)."""
    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place (mode from the umask,
    as a plain ``open`` would give, not mkstemp's 0600)."""

    def dump(f: IO[str]) -> None:
        json.dump(data, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")

    _replace_atomically(Path(path), dump)


def write_jsonl_atomic(
    path: str | os.PathLike[str], rows: Iterable[dict[str, Any]], *, ensure_ascii: bool = False
) -> bool:
    """One JSON object a line (``json.dumps`` of each row, keys in their order), written as
    ``write_json_atomic`` writes, unless ``path`` holds exactly these bytes already: then it is left as it
    is (a rerun changes nothing, not even its time). True when the file was written."""
    path = Path(path)
    text = "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)
    try:
        if path.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:  # not there yet (or unreadable): written anew
        pass
    _replace_atomically(path, lambda f: f.write(text))
    return True


def _replace_atomically(path: Path, fill: Callable[[IO[str]], object]) -> None:
    """``fill`` a temporary UTF-8 file beside ``path`` (mode from the umask) and rename it into place; a
    full disk, a read-only file system or a denied permission is one line naming ``path``, and the old
    file at ``path``, if any, is left as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise (write_failure(err, path) or err) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException as err:
        failure = write_failure(err, path)
        Path(tmp).unlink(missing_ok=True)
        if failure is not None:
            raise failure from None
        raise


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file at ``path``, read in chunks (never whole into memory; hashlib releases the GIL)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_sha256(folder: Path, names: list[str]) -> dict[str, str]:
    """SHA-256 of each of ``names`` in ``folder``, the files hashed side by side on the machine's cores
    (hashlib releases the GIL), largest first: the time is about that of the largest file alone."""
    ordered = sorted(names, key=lambda n: -(folder / n).stat().st_size)
    workers = max(1, min(len(ordered), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="sha256") as pool:
        digests = dict(zip(ordered, pool.map(lambda n: file_sha256(folder / n), ordered), strict=True))
    return {name: digests[name] for name in names}


_DENIED = (errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def _exists(path: Path, name: str) -> bool:
    """``path.exists()``, but a folder on the way that may not be searched, or a symbolic link loop, is one
    line, not False (nor a traceback)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise LongifyError(f"{name}: permission denied on {path} (cannot look into {path.parent})") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            loop = _loop_in(path)
            where = (
                "a symbolic link loop" if str(loop) == name else f"{loop} on the way is a symbolic link loop"
            )
            raise LongifyError(
                f"{name}: {where} (too many levels of symbolic links); choose another folder"
            ) from None
        raise LongifyError(f"{name}: cannot look at {path} ({err.strerror or err})") from None
    return True


def _loop_in(path: Path) -> Path:
    """The first of ``path`` and its parents, from the root down, that cannot be resolved for a link loop."""
    for place in (*reversed(path.parents), path):
        try:
            place.stat()
        except OSError as err:
            if err.errno == errno.ELOOP:
                return place
    return path


def _why_not_writable(folder: Path) -> str | None:
    """None when this process may create entries in ``folder``; else why not, in a few words."""
    mode = os.W_OK | os.X_OK
    if (
        os.access(folder, mode)
        if os.geteuid() == os.getuid()
        else os.access(folder, mode, effective_ids=True)
    ):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


def nearest_existing(folder: str | Path) -> Path:
    """``folder`` (made absolute) if it exists, else its nearest existing parent; a folder on the way that
    may not be searched or a symbolic link loop is one line naming ``folder``."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not _exists(existing, str(folder)):
        existing = existing.parent
    return existing


def check_writable(folder: str | Path, *, replace: bool = False) -> None:
    """Before any long work, refuse in one line a folder that cannot be written: one on the way is a file,
    or the folder (when it exists; else its nearest existing parent, where it will be made) is read-only or
    not ours. ``replace``: the folder is renamed into place, so its parent must be writable too."""
    folder = Path(os.path.abspath(folder))
    name = str(folder)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        what = (
            "exists and is not a directory" if existing == folder else f"{existing} is a file, not a folder"
        )
        raise LongifyError(f"{name}: {what}")
    for place in dict.fromkeys([existing, folder.parent if replace and existing == folder else existing]):
        if why := _why_not_writable(place):
            where = "this folder" if place == folder else place
            raise LongifyError(f"{name}: cannot write in {where} ({why}); choose a writable folder")


def _free_bytes(path: Path) -> int | None:
    for place in (path, *path.parents):
        try:
            stat = os.statvfs(place)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return None


# the names libraries give the file they write to, in the frames of a failed write
_PATH_LOCALS = ("filename", "fname", "file_name", "file", "path", "fp", "f")


def _path_in(value: object) -> tuple[str, bool] | None:
    """``value`` as an absolute path and whether it is a file open for writing: a str / bytes / PathLike
    one, or the name of an open file (one open for reading only is never the file being written)."""
    writing = False
    if isinstance(value, io.IOBase):
        try:
            writing = value.writable()
        except ValueError:  # closed: its mode says
            writing = any(c in str(getattr(value, "mode", "")) for c in "wax+")
        if not writing:
            return None
        value = getattr(value, "name", None)
    if isinstance(value, (str, bytes, os.PathLike)):
        text = os.fsdecode(value)
        if os.path.isabs(text):
            return text, writing
    return None


def written_file(err: BaseException) -> str | None:
    """The file a failed write was writing, found in its traceback where the error names none (a write to
    an open file, TensorBoard's writer thread, a C++ or Rust writer): the innermost frame's path-like local
    on a disk with no space left, else the innermost file open for writing, else none (a bare path could be
    an input being read: naming it would send the user to the wrong disk)."""
    found: list[tuple[str, bool]] = []
    tb = err.__traceback__
    while tb is not None:
        try:
            local = tb.tb_frame.f_locals
            found += [p for name in _PATH_LOCALS if (p := _path_in(local.get(name))) is not None]
        except Exception:  # a frame's locals are best effort
            pass
        tb = tb.tb_next
    found.reverse()  # innermost first
    full = next((p for p, _ in found if _free_bytes(Path(p)) == 0), None)
    return full or next((p for p, writing in found if writing), None)


def write_failure(err: BaseException, where: str | Path | None = None) -> LongifyError | None:
    """The one-line error for a write that failed on a full disk, a read-only file system or a denied
    permission (``where``: what was being written; else the file the error or its traceback names), or None
    for any other error. Libraries report a full disk in their own ways (OSError 28, ``SafetensorError ...
    os error 28``, torch's ``unexpected pos``), so a failure while the disk under ``where`` (or the file
    being written) has no space left counts as a full disk too."""
    if isinstance(err, LongifyError):
        return None
    number = err.errno if isinstance(err, OSError) else None
    target = where or (err.filename if isinstance(err, OSError) else None)
    if target is None and isinstance(err, (OSError, RuntimeError)):
        target = written_file(err)
    text = str(err)
    full = number in _FULL or any(t in text for t in _FULL_TEXT)
    if not full and isinstance(err, (OSError, RuntimeError)):
        # a named error (file not found, ...) stays what it says; only a vague one is read from the disk
        checked = where if where is not None else target if number is None else None
        full = checked is not None and _free_bytes(Path(checked)) == 0
    if full:
        return LongifyError(f"{target or 'a file'}: no space left on the disk while writing it; free some "
                            "space or choose another folder")  # fmt: skip
    if number in _DENIED or number == errno.EROFS:
        return LongifyError(f"{target or 'a file'}: {os.strerror(number or errno.EACCES).lower()}")
    return None


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first (what a ``mkdir -p`` would make)."""
    missing = []
    for place in (folder, *folder.parents):
        if place.exists():
            break
        missing.append(place)
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: those a failed command made for nothing."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # never made (a folder renamed into place that was not)
        except OSError:
            return
