"""Output directories that appear whole or not at all."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from longify.errors import LongifyError
from longify.fileio import (
    check_writable,
    honour_umask,
    honour_umask_tree,
    missing_folders,
    remove_if_empty,
    write_failure,
)
from longify.locks import INSIDE_NAME, describe, held_inside, output_lock, remove_dead_leftovers

logger = logging.getLogger(__name__)


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """``mkdtemp`` named ``{prefix}{pid}-xxxx`` (so a later run can tell a dead owner's leftovers), umask mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    honour_umask(tmp)
    return tmp


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_output_dir(out: str | Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Refuse an existing, non-empty ``out`` unless ``overwrite``, or one that cannot be written (see
    ``check_writable``: it is renamed into place, so its parent must be writable); return it as a Path."""
    out = Path(out)
    # a new or replaced OUT is renamed into place: its parent must be writable (an existing empty OUT, as
    # when the lock had to go inside it, is only written into)
    check_writable(out, replace=overwrite or not out.is_dir())
    if out.exists() and not out.is_dir():
        raise LongifyError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(p.name != INSIDE_NAME for p in out.iterdir()):
        if not overwrite:
            raise LongifyError(f"{out}: output directory exists and is not empty; pass {flag} to replace it")
        if found := held_inside(out):  # replacing OUT would pull the folder away from under its writer
            lock, holder = found
            raise LongifyError(
                f"{out}: {flag} would replace it, but another longify process writes inside it "
                f"({lock} is held by {describe(holder)}); wait for it to finish or choose another folder"
            )
    return out


def clean_leftovers(out: Path) -> None:
    """Remove the ``.OUT.tmp-<pid>-*`` / ``.OUT.old-<pid>-*`` folders of processes killed while writing
    ``out``; an old ``out`` parked by a swap that was cut short is put back first."""
    for old in remove_dead_leftovers(out.parent, f".{out.name}.old-", lambda p: None):
        if not out.exists() and (old / out.name).is_dir():
            (old / out.name).rename(out)
            logger.info("restored %s from %s", out, old)
        _rmtree(old)
    remove_dead_leftovers(out.parent, f".{out.name}.tmp-", _rmtree)


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; on success rename it to ``out``.

    Holds ``out``'s lock (see ``longify.locks``). On any error or interrupt the temporary directory is
    removed and ``out`` is left as it was (absent, or the old one when overwriting); what a killed run left
    behind is removed by the next one. Folders get the umask's mode, not mkdtemp's 0700.
    """
    with output_lock(out):
        out = check_output_dir(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)
        tmp = make_temp_dir(out.parent, f".{out.name}.tmp-")
        old: Path | None = None
        try:
            yield tmp
            honour_umask_tree(tmp)
            check_output_dir(out, overwrite)  # written meanwhile by a process that did not lock it
            if out.exists():
                old = make_temp_dir(out.parent, f".{out.name}.old-")
                out.rename(old / out.name)
            tmp.rename(out)
        except BaseException as err:
            failure = write_failure(err, out)  # before the cleanup frees the space
            _rmtree(tmp)
            if old is not None and not out.exists():
                (old / out.name).rename(out)  # put the previous OUT back
            if failure is not None:
                raise failure from None
            if isinstance(err, LongifyError):
                raise renamed(err, tmp, out) from None
            raise
        finally:
            if old is not None:
                _rmtree(old)


@contextmanager
def staged_files(
    output_dir: str | Path,
    prefix: str,
    settle: Callable[[Path], None],
    commit: Callable[[Path, Path], None],
) -> Iterator[Path]:
    """Yield a temporary directory ``prefix<pid>-*`` inside ``output_dir`` (after ``settle(output_dir)`` has
    dealt with what killed processes left); on success ``commit(output_dir, tmp)`` moves its files in. On an
    error the temporary directory goes, and a full disk is one line naming the folder."""
    output_dir = Path(output_dir)
    check_writable(output_dir)
    made = missing_folders(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settle(output_dir)
    tmp = make_temp_dir(output_dir, prefix)
    try:
        yield tmp
        honour_umask_tree(tmp)
        commit(output_dir, tmp)
    except BaseException as err:
        failure = write_failure(err, output_dir)  # before the cleanup frees the space
        _rmtree(tmp)
        remove_if_empty(made)
        if failure is not None:
            raise failure from None
        if isinstance(err, LongifyError):
            raise renamed(err, tmp, output_dir) from None
        raise
    _rmtree(tmp)


def renamed(err: LongifyError, tmp: Path, final: Path) -> LongifyError:
    """``err`` naming the files of the temporary folder ``tmp`` by the names they were to have in ``final``
    (a full disk while writing ``.save-*/results.json`` is about ``OUT/results.json``)."""
    text = str(err)
    return err if str(tmp) not in text else LongifyError(text.replace(str(tmp), str(final)))


@contextmanager
def files_into(output_dir: str | Path, last: str = "config.json") -> Iterator[Path]:
    """Yield a temporary directory inside ``output_dir``; on success move its files into ``output_dir``.

    For a model saved beside checkpoints: the old ``last`` file (``config.json``) is removed first and the
    new one moved in after everything else, so an interrupted save leaves no loadable half-model.
    ``.save-<pid>-*`` folders of killed processes are removed first.
    """

    def commit(out: Path, tmp: Path) -> None:
        (out / last).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == last):
            os.replace(f, out / f.name)

    with staged_files(
        output_dir, ".save-", lambda out: remove_dead_leftovers(out, ".save-", _rmtree), commit
    ) as tmp:
        yield tmp
