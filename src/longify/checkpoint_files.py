"""What a checkpoint folder holds, and whether it is what was saved: its completion mark
(``longify_checkpoint.json``: every file with its size and SHA-256, the step, the loss accumulators, the
training time), the files resuming needs, and the checks of size, step and content against the mark."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from longify.artifacts import TRAINER_STATE_FILE
from longify.fileio import files_sha256, write_json_atomic

logger = logging.getLogger(__name__)

MARK = "longify_checkpoint.json"
_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def checkpoints_in(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``checkpoint-N`` folders in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def checkpoint_step(ckpt: str | Path | None) -> int | None:
    """The global step a Trainer checkpoint was saved at, from its ``trainer_state.json``; None for a folder
    without a readable one (a run folder, a converted or exported model), whatever its name: its files
    hold no step to go by. Every checkpoint a run resumes from has one (``incomplete_reason``)."""
    if not ckpt:
        return None
    try:
        return int(json.loads((Path(ckpt) / TRAINER_STATE_FILE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_mark(ckpt: str | Path) -> dict[str, Any] | None:
    """The completion mark of ``ckpt``, or None when it has none (or an unreadable one)."""
    try:
        mark = json.loads((Path(ckpt) / MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and isinstance(mark.get("files"), dict) else None


def _resume_files_missing(ckpt: Path, world_size: int) -> list[str]:
    """The files resuming training needs that ``ckpt`` lacks: state, weights, optimizer, scheduler, RNG.
    RNG state saved under another number of processes counts (HF resumes from it, and says so)."""
    missing = [
        n
        for n in (TRAINER_STATE_FILE, "config.json", "optimizer.pt", "scheduler.pt")
        if not (ckpt / n).is_file()
    ]
    if not any((ckpt / w).is_file() for w in _WEIGHTS):
        missing.insert(1, _WEIGHTS[0])
    if not any(ckpt.glob("rng_state*.pth")):
        missing.append("rng_state.pth" if world_size <= 1 else "rng_state_0.pth")
    return missing


def _saved_step(mark: dict[str, Any] | None) -> int | None:
    """The step the mark says its checkpoint was saved at (older marks: in the loss accumulators)."""
    mark = mark or {}
    step = mark.get("step", (mark.get("loss") or {}).get("step"))
    return step if isinstance(step, int) else None


def _step_mismatch(ckpt: Path, mark: dict[str, Any] | None) -> str | None:
    """Why ``trainer_state.json``'s global_step cannot be right: not the step of the mark or the folder name."""
    if not (ckpt / TRAINER_STATE_FILE).is_file():
        return None  # a missing one is reported as such
    try:
        step = int(json.loads((ckpt / TRAINER_STATE_FILE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{TRAINER_STATE_FILE} has no readable global_step"
    saved, named = _saved_step(mark), _NAME.match(ckpt.name)
    if saved is not None and step != saved:
        return f"{TRAINER_STATE_FILE} says global_step {step}, but it was saved at step {saved}"
    if named and step != int(named.group(1)):
        return f"{TRAINER_STATE_FILE} says global_step {step}, but the folder is {ckpt.name}"
    return None


def damage_reason(ckpt: str | Path) -> str | None:
    """Why the content of ``ckpt`` is not what was saved (None when it verifies, or has nothing to verify by):
    a step that disagrees (see ``_step_mismatch``), a mark whose hashes are not those of its file list, else
    the first file whose SHA-256 differs from its mark's (smallest files first; all are hashed, side by
    side). Call after ``incomplete_reason``: every file listed is there, at its size."""
    ckpt = Path(ckpt)
    mark = read_mark(ckpt)
    if reason := _step_mismatch(ckpt, mark):
        return reason
    hashes: dict[str, str] = (mark or {}).get("sha256") or {}
    listed = (mark or {}).get("files") or {}
    if not isinstance(hashes, dict) or (
        hashes and (set(hashes) != set(listed) or not all(isinstance(h, str) for h in hashes.values()))
    ):
        return f"its {MARK} is damaged (its sha256 entries do not match its file list)"
    now = files_sha256(ckpt, sorted(hashes, key=lambda n: (ckpt / n).stat().st_size))
    return next((f"{name} differs from its save (sha256)" for name in now if now[name] != hashes[name]), None)


def note_unhashed(ckpt: Path) -> None:
    """A mark of an earlier longify has sizes only: say the content was not verified."""
    mark = read_mark(ckpt)
    if mark is not None and not mark.get("sha256"):
        logger.warning(
            "%s: its %s has no sha256 (saved by an earlier longify): checked by size only", ckpt, MARK
        )


def newest_complete(folder: str | Path, world_size: int = 1, *, quiet: bool = False) -> Path | None:
    """The newest checkpoint in ``folder`` that a run can resume from, complete and with the content of its save;
    logs each newer one it skips, and why."""
    for _, ckpt in reversed(checkpoints_in(folder)):
        reason = incomplete_reason(ckpt, world_size) or damage_reason(ckpt)
        if reason is None:
            if not quiet:
                note_unhashed(ckpt)
            return ckpt
        if not quiet:
            logger.warning("skipping %s: %s", ckpt, reason)
    return None


def incomplete_reason(
    ckpt: str | Path, world_size: int = 1, *, need_mark: bool = True, need_state: bool = True
) -> str | None:
    """Why ``ckpt`` cannot be used (None when it can): a file missing or changed since the save, no
    completion mark (``need_mark``), or no optimizer/scheduler/RNG state to resume from (``need_state``)."""
    ckpt = Path(ckpt)
    mark = read_mark(ckpt)
    listed: dict[str, int] = (mark or {}).get("files", {})
    missing = _resume_files_missing(ckpt, world_size) if need_state else []
    missing += [n for n in listed if n not in missing and not (ckpt / n).is_file()]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    for name, size in listed.items():
        if (now := (ckpt / name).stat().st_size) != size:
            return f"{name} has {now} bytes, {size} when it was saved"
    if need_mark and mark is None:
        return f"no {MARK}: its save did not finish"
    return None


def mark_complete(
    ckpt: Path, loss: dict[str, Any], *, step: int | None = None, train_seconds: float | None = None
) -> None:
    """Write the completion mark last: every file of ``ckpt`` with its size and SHA-256, the step (``step``,
    else the loss accumulators'), the loss accumulators and the run's training seconds so far."""
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*")) if p.is_file()}
    files.pop(MARK, None)
    mark: dict[str, Any] = {
        "files": files,
        "sha256": files_sha256(ckpt, list(files)),
        "step": loss.get("step") if step is None else step,
        "loss": loss,
        "written": time.time(),
    }
    if train_seconds is not None:
        mark["train_seconds"] = round(train_seconds, 4)
    write_json_atomic(ckpt / MARK, mark)


def being_written(folder: Path) -> Path:
    """The file a failed save in ``folder`` was writing: the newest one (torch and plain writes leave theirs
    half-written), or the weights when only a whole config precedes them (safetensors removes its file)."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    newest = max(files, key=lambda p: p.stat().st_mtime_ns, default=folder)
    if newest.name in ("config.json", "generation_config.json") and not any(
        (folder / w).exists() for w in _WEIGHTS
    ):
        try:
            json.loads(newest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return newest
        return folder / _WEIGHTS[0]
    return newest
