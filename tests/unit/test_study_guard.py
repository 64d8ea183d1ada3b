"""The job guard of `study run`, in one process: a signal the run was started ignoring stays ignored, and
without /proc the guard finds no processes rather than failing."""

from __future__ import annotations

import os
import signal
import time


def test_a_signal_the_run_was_started_ignoring_stays_ignored() -> None:
    """A `study run` started with SIGINT ignored (`cmd &` in a script, whose Ctrl-C must not reach it) keeps
    SIGINT ignored: a Ctrl-C never stops it, while SIGTERM still does."""
    from longify.study import stopping

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stopping.stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == stopping.STOP.handle
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stopping.STOP.signum is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_without_proc_the_guard_finds_no_processes_rather_than_failing(monkeypatch) -> None:
    """Where there is no /proc (not Linux) the guard still runs the job (its docstring): looking for what the
    job left behind raised FileNotFoundError there, so every job, also one that succeeded, failed."""
    from longify.study import guard

    listdir = os.listdir

    def no_proc(path):
        if str(path) == "/proc":
            raise FileNotFoundError(path)
        return listdir(path)

    monkeypatch.setattr(guard.os, "listdir", no_proc)
    assert guard.descendants(os.getpid()) == []
    guard.kill_tree()
