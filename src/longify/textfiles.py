"""Reading the user's text files with one clear line for what goes wrong: a file that may not be read, a
folder where a file was expected, a byte that is not UTF-8 (named by line, column and byte offset in the
file, not in some buffer)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from longify.errors import LongifyError


def read_failure(path: str | Path, err: OSError) -> LongifyError:
    """The one-line error for a file that cannot be opened or read (permission, folder, missing, I/O)."""
    reason = err.strerror or type(err).__name__
    if isinstance(err, PermissionError):
        reason = "permission denied (cannot read it)"
    elif isinstance(err, FileNotFoundError):
        reason = "file not found"
    elif isinstance(err, IsADirectoryError):
        reason = "is a directory, not a file"
    return LongifyError(f"{path}: {reason[:1].lower()}{reason[1:]}")


def path_kind(path: str | Path) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` or None when nothing is there; a path that may not be looked at
    is a one-line error, never reported as missing."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise read_failure(path, err) from None
    return "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "other"


def utf8_error(
    path: str | Path, raw: bytes, lineno: int, offset: int, err: UnicodeDecodeError
) -> LongifyError:
    """``raw``: line ``lineno`` of ``path``, starting at byte ``offset`` of the file."""
    column = len(raw[: err.start].decode("utf-8", errors="replace")) + 1
    return LongifyError(
        f"{path}: not UTF-8 text: byte 0x{raw[err.start]:02x} ({err.reason}) at line {lineno}, column "
        f"{column} (byte offset {offset + err.start} in the file)"
    )


def utf8_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each ``\\n``-terminated line of a UTF-8 file (newline kept), decoded line by
    line so that an error names its place in the file; opening or reading errors are one line too."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below; the errors of open itself are mapped)
    except OSError as err:
        raise read_failure(path, err) from None
    with f:
        offset = 0
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except OSError as err:
                raise read_failure(path, err) from None
            if not raw:
                return
            lineno += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise utf8_error(path, raw, lineno, offset, err) from None
            yield lineno, text
            offset += len(raw)


def read_utf8(path: str | Path) -> str:
    """The whole text of a UTF-8 file (errors as in ``utf8_lines``)."""
    return "".join(text for _, text in utf8_lines(path))
