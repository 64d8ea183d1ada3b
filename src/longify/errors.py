"""User-facing errors: one clear line naming the file, field or flag, and exit code 2."""

from __future__ import annotations


class LongifyError(Exception):
    """An error caused by the user's input (a flag, a file, a field).

    The CLI prints ``longify: error: <message>`` on one line and exits with code 2; tracebacks only
    with ``--debug``. Library callers can catch it like any exception.
    """

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
