"""What longify shows on the console besides its log lines.

``longify -q`` (``set_quiet``) keeps warnings, errors and each command's closing summary: no progress bars
(datasets' map / save / masking bars, the Trainer's bar, longify's own) and no log dicts printed by the
Trainer's console callbacks. The same logs still reach TensorBoard and the runs' metric files.
"""

from __future__ import annotations

from typing import Any

_quiet = False
_bars_were_on: bool | None = None  # datasets' progress-bar setting before set_quiet(True) turned it off


def set_quiet(quiet: bool) -> None:
    """Turn quiet mode on or off for this process (off restores datasets' bars as they were)."""
    global _quiet, _bars_were_on
    if quiet == _quiet:
        return
    import datasets  # only here: a command without -q does not pay for its import

    if quiet:
        _bars_were_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
    elif _bars_were_on:
        datasets.enable_progress_bars()
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def quiet_trainer(trainer: Any) -> None:
    """Under ``-q``: take the Trainer's console callbacks out (``ProgressCallback``'s tqdm bar and the log
    dicts it writes, or ``PrinterCallback``'s printed dicts with ``--disable_tqdm``); logging callbacks
    such as TensorBoard's stay."""
    if not _quiet:
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, PrinterCallback | ProgressCallback):
            trainer.remove_callback(callback)
