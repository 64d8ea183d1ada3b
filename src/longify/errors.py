"""User-facing errors: one clear line naming the file, field or flag, and exit code 2."""

from __future__ import annotations

import argparse


class LongifyError(Exception):
    """An error caused by the user's input (a flag, a file, a field).

    The CLI prints ``longify: error: <message>`` on one line and exits with code 2; tracebacks only
    with ``--debug``. Library callers can catch it like any exception.
    """

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def positive_int(text: str) -> int:
    """argparse type: an integer above 0 (argparse then names the flag in its one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
