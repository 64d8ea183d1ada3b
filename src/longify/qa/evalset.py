"""The files of one QA evaluation (results.json, predictions.json, nbest_predictions.json,
question_scores.jsonl), replaced as a set: a killed evaluation leaves the earlier set or the new one, never
one's results.json beside the other's predictions.

The folder may hold other files (a ``qa train`` run's model), so it cannot be swapped whole as
``atomic_output_dir`` does. Instead the new files are written into ``.eval-new-<pid>-*`` inside it; the old
ones are parked in ``.eval-old-<pid>-*`` (results.json first) beside a record of the swap, the new ones moved
in (results.json last), and the record removed. So a results.json in the folder always belongs with the files
beside it. Whatever a killed swap left is settled by the next writer, under the folder's lock
(``recover_eval_sets``): cut short before its results.json was in place, the swap is undone (the old set comes
back); after that, it is completed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longify.artifacts import QA_EVAL_FILES, RESULTS_FILE
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import remove_dead_leftovers
from longify.outdir import make_temp_dir, staged_files

logger = logging.getLogger(__name__)

NEW, OLD = ".eval-new-", ".eval-old-"
SWAP_RECORD = "swap.json"  # in .eval-old-*: {"new": folder name, "new_files": [..], "old_files": [..]}


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _in_order(names: set[str]) -> list[str]:
    """``names`` with results.json first (the order old files are parked in; new ones go in reversed)."""
    return sorted(names, key=lambda n: (n != RESULTS_FILE, n))


@contextmanager
def eval_files_into(output_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary folder inside ``output_dir`` for an evaluation's files; on success they replace the
    folder's evaluation files (``QA_EVAL_FILES``, all of them: a name the new set lacks goes too) as a set.
    Call it under the folder's lock. On an error the folder is left as it was."""
    with staged_files(output_dir, NEW, recover_eval_sets, _swap) as tmp:
        yield tmp


def _swap(out: Path, new: Path) -> None:
    new_files = {p.name for p in new.iterdir() if p.is_file()}
    old_files = {n for n in {*QA_EVAL_FILES, *new_files} if (out / n).is_file()}
    old = make_temp_dir(out, OLD)
    record = {"new": new.name, "new_files": sorted(new_files), "old_files": sorted(old_files)}
    try:
        write_json_atomic(old / SWAP_RECORD, record)
    except LongifyError as err:  # a full disk, say: nothing was moved yet; the message names the folder
        _rmtree(old)
        raise LongifyError(str(err).replace(str(old / SWAP_RECORD), str(out))) from None
    except BaseException:
        _rmtree(old)
        raise
    try:
        for name in _in_order(old_files):  # results.json first
            os.replace(out / name, old / name)
        for name in reversed(_in_order(new_files)):  # results.json last
            os.replace(new / name, out / name)
    except BaseException:
        _undo(out, old, record)
        raise
    (old / SWAP_RECORD).unlink()  # done: nothing to undo any more
    _rmtree(old)


def _undo(out: Path, old: Path, record: dict) -> None:
    """Put the parked old files back and remove the new ones already moved in (results.json back last)."""
    new = out / str(record.get("new", ""))
    old_files = set(record.get("old_files", []))
    for name in _in_order(set(record.get("new_files", [])) - old_files):
        if not (new / name).exists():  # moved in already
            (out / name).unlink(missing_ok=True)
    for name in reversed(_in_order(old_files)):
        if (old / name).exists():  # else not parked yet, or already put back
            os.replace(old / name, out / name)
    (old / SWAP_RECORD).unlink(missing_ok=True)
    _rmtree(old)


def _settle(out: Path, old: Path) -> None:
    """Undo or complete the swap a killed process left in ``old``."""
    try:
        record = json.loads((old / SWAP_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None  # the swap was complete, or had not begun: nothing of ours to put back
    if isinstance(record, dict):
        new = out / str(record.get("new", ""))
        if any((new / n).exists() for n in record.get("new_files", [])):
            _undo(out, old, record)
            logger.warning(
                "%s: an evaluation was killed while replacing its files; the earlier evaluation's are back",
                out,
            )
            return
    _rmtree(old)


def recover_eval_sets(output_dir: str | Path) -> None:
    """Settle the swaps of killed processes in ``output_dir`` (see the module docstring) and remove their
    temporary folders; call it under the folder's lock."""
    out = Path(output_dir)
    remove_dead_leftovers(out, OLD, lambda old: _settle(out, old))
    remove_dead_leftovers(out, NEW, _rmtree)
