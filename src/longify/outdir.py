"""Output directories that appear whole or not at all."""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from longify.errors import LongifyError
from longify.locks import INSIDE_NAME, describe, held_inside, output_lock, remove_dead_leftovers

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
    check_writable(output_dir)
    if requested:
        ckpt = check_requested(requested, world_size)
        _check_nothing_newer(output_dir, ckpt, overwrite)
        return str(ckpt)
    if overwrite or not output_dir.is_dir():
        return None
    last = newest_complete(output_dir, world_size)
    if last:
        logger.info("resuming from %s (pass --overwrite_output_dir to start from scratch)", last)
    return str(last) if last else None


def _check_nothing_newer(output_dir: Path, ckpt: Path, overwrite: bool) -> None:
    """``--resume_from_checkpoint``: refuse one with newer checkpoints beside it in ``output_dir`` (the next
    automatic resume would pick those, and rotation would count them as newer than what this run saves);
    under ``--overwrite_output_dir`` one inside ``output_dir`` (it would be cleared with the old run)."""
    from longify.checkpoints import checkpoint_step, checkpoints_in

    flag = f"--resume_from_checkpoint {ckpt}"
    inside = output_dir.is_dir() and ckpt.resolve().parent == output_dir.resolve()
    if overwrite:
        if inside:
            raise LongifyError(
                f"{flag}: it is in --output_dir {output_dir}, which --overwrite_output_dir clears; "
                "drop one of the two flags, or give another --output_dir"
            )
        return
    step = checkpoint_step(ckpt) or 0
    newer = [p.name for s, p in checkpoints_in(output_dir) if s > step]
    if newer:
        raise LongifyError(
            f"{flag}: {output_dir} holds newer checkpoints ({', '.join(newer)}) from a later point of a run; "
            "pass --overwrite_output_dir to replace that run, or give another --output_dir"
        )


# what a run writes into its --output_dir (removed by --overwrite_output_dir): run records and metrics,
# predictions, the saved model and tokenizer; lock files and TensorBoard's runs/ stay (HF never deletes logs)
RUN_RECORDS = (
    "checkpoint-*",
    "longify_run.json",
    "pretrain_metrics.json",
    "results.json",
    "predictions.json",
    "nbest_predictions.json",
    "question_scores.jsonl",
    "null_odds.json",
    "metrics.json",
)
MODEL_FILES = (
    "README.md",
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "training_args.bin",
    "tokenizer*.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "chat_template.*",
)


def clear_previous_run(output_dir: str | Path, *also: str, source: str | None = None) -> None:
    """``--overwrite_output_dir``: remove the earlier run's outputs (``RUN_RECORDS``, ``MODEL_FILES`` and the
    names ``also``) from ``output_dir``; called just before training starts, after every input was validated
    and loaded. The model files stay when ``source`` (the model trained) is ``output_dir`` itself (a crash
    before the new model is saved must not lose it). Lock files, TensorBoard's ``runs/`` and anything else
    in the folder stay."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    patterns = [*RUN_RECORDS, *also]
    if source is not None and Path(source).resolve() == output_dir.resolve():
        logger.info(
            "--overwrite_output_dir: keeping the model files of %s, the model this run starts from", source
        )
    else:
        patterns += MODEL_FILES
    doomed = {p for pattern in patterns for p in output_dir.glob(pattern)}
    for path in sorted(doomed):
        logger.info("--overwrite_output_dir: removing %s", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
