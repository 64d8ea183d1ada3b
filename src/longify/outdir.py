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

logger = logging.getLogger(__name__)


def check_output_dir(out: str | Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Refuse an existing, non-empty ``out`` unless ``overwrite``; return it as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LongifyError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LongifyError(f"{out}: output directory exists and is not empty; pass {flag} to replace it")
    return out


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; on success rename it to ``out``.

    On any error or interrupt the temporary directory is removed and ``out`` is left as it was
    (absent, or the old one when overwriting).
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old: Path | None = None
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / out.name)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            (old / out.name).rename(out)  # put the previous OUT back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def files_into(output_dir: str | Path, last: str = "config.json") -> Iterator[Path]:
    """Yield a temporary directory inside ``output_dir``; on success move its files into ``output_dir``.

    For a model saved beside checkpoints: the old ``last`` file (``config.json``) is removed first and the
    new one moved in after everything else, so an interrupted save leaves no loadable half-model.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=output_dir))
    try:
        yield tmp
        (output_dir / last).unlink(missing_ok=True)
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == last):
            os.replace(f, output_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resume_checkpoint(
    output_dir: str | Path, *, requested: str | None, overwrite: bool, main_process: bool = True
) -> str | None:
    """The Trainer checkpoint to resume from, as HF's scripts decide it: ``requested``
    (``--resume_from_checkpoint``), else the last ``checkpoint-*`` in ``output_dir``; with ``overwrite``
    (``--overwrite_output_dir``) none, and the main process removes the old checkpoints."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise LongifyError(f"--output_dir {output_dir}: exists and is not a directory")
    if requested:
        return requested
    if not output_dir.is_dir():
        return None
    if overwrite:
        if main_process:
            for ckpt in output_dir.glob("checkpoint-*"):
                shutil.rmtree(ckpt, ignore_errors=True)
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir))
    if last:
        logger.info("resuming from %s (pass --overwrite_output_dir to start from scratch)", last)
    return last
