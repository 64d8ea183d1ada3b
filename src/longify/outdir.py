"""Output directories that appear whole or not at all."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longify.errors import LongifyError
from longify.locks import INSIDE_NAME, output_lock, remove_dead_leftovers

logger = logging.getLogger(__name__)


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


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """``mkdtemp`` named ``{prefix}{pid}-xxxx`` (so a later run can tell a dead owner's leftovers), umask mode."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    honour_umask(tmp)
    return tmp


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_output_dir(out: str | Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Refuse an existing, non-empty ``out`` unless ``overwrite``; return it as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LongifyError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(p.name != INSIDE_NAME for p in out.iterdir()) and not overwrite:
        raise LongifyError(f"{out}: output directory exists and is not empty; pass {flag} to replace it")
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
        except BaseException:
            _rmtree(tmp)
            if old is not None and not out.exists():
                (old / out.name).rename(out)  # put the previous OUT back
            raise
        finally:
            if old is not None:
                _rmtree(old)


@contextmanager
def files_into(output_dir: str | Path, last: str = "config.json") -> Iterator[Path]:
    """Yield a temporary directory inside ``output_dir``; on success move its files into ``output_dir``.

    For a model saved beside checkpoints: the old ``last`` file (``config.json``) is removed first and the
    new one moved in after everything else, so an interrupted save leaves no loadable half-model.
    ``.save-<pid>-*`` folders of killed processes are removed first.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(output_dir, ".save-", _rmtree)
    tmp = make_temp_dir(output_dir, ".save-")
    try:
        yield tmp
        honour_umask_tree(tmp)
        (output_dir / last).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == last):
            os.replace(f, output_dir / f.name)
    finally:
        _rmtree(tmp)


def resume_checkpoint(
    output_dir: str | Path, *, requested: str | None, overwrite: bool, world_size: int = 1
) -> str | None:
    """The Trainer checkpoint to resume from: ``requested`` (``--resume_from_checkpoint``, refused with one
    line when incomplete), else the newest *complete* ``checkpoint-N`` in ``output_dir`` (each newer,
    unfinished or damaged one is logged and skipped); none with ``overwrite`` (``--overwrite_output_dir``),
    which deletes nothing here: see ``clear_previous_run``, called once the inputs have loaded."""
    from longify.checkpoints import check_requested, newest_complete

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise LongifyError(f"--output_dir {output_dir}: exists and is not a directory")
    if requested:
        return str(check_requested(requested, world_size))
    if overwrite or not output_dir.is_dir():
        return None
    last = newest_complete(output_dir, world_size)
    if last:
        logger.info("resuming from %s (pass --overwrite_output_dir to start from scratch)", last)
    return str(last) if last else None


def clear_previous_run(output_dir: str | Path, *also: str) -> None:
    """``--overwrite_output_dir``: remove the earlier run's checkpoints (and the files ``also``) from
    ``output_dir``; called just before training starts, after every input was validated and loaded."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for ckpt in sorted(output_dir.glob("checkpoint-*")):
        logger.info("--overwrite_output_dir: removing %s", ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)
    for name in also:
        (output_dir / name).unlink(missing_ok=True)
