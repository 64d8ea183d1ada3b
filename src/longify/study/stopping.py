"""How a study run stops its jobs: each job runs under its guard (``longify.study.guard``), and SIGTERM /
SIGINT to the run are passed on to the running job (each of them under ``--parallel``), which gets ``STOP_GRACE_SECONDS`` to end before its guard
kills it; the job is then recorded as interrupted and :class:`Interrupted` ends the run (exit 128 + signal)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

STOP_GRACE_SECONDS = 30.0  # after SIGTERM / SIGINT, how long the job may take to end before it is killed
KILL_GRACE_SECONDS = 10.0  # then how long its guard may take to kill it


def start_guarded(argv: list[str], log: IO[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` under ``longify.study.guard`` in a session of its own; returns the guard's process and
    the write end of the pipe whose closing (also by our death) makes the guard kill the whole job."""
    read_end, alive = os.pipe()
    try:
        guard = [sys.executable, "-m", "longify.study.guard", str(read_end), "--", *argv]
        proc = subprocess.Popen(
            guard,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            pass_fds=(read_end,),
            start_new_session=True,
        )
    except BaseException:
        os.close(alive)
        raise
    finally:
        os.close(read_end)
    STOP.running.add(proc)
    if STOP.signum is not None:  # a signal came while it started
        STOP.forward(STOP.signum)
    return proc, alive


def wait_guarded(proc: subprocess.Popen[bytes], alive: int) -> int:
    """The job's return code; once a signal came, give it ``STOP_GRACE_SECONDS`` to end, then have the guard
    kill it (closing ``alive``), then kill the guard."""
    try:
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if STOP.since is not None and time.monotonic() - STOP.since > STOP_GRACE_SECONDS:
                break
        os.close(alive)
        alive = -1
        try:
            return proc.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    finally:
        STOP.running.discard(proc)
        if alive >= 0:
            os.close(alive)


class Interrupted(KeyboardInterrupt):
    """``study run`` stopped by SIGTERM / SIGINT; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int, where: str | None) -> None:
        self.signum, self.where, self.exit_code = signum, where, 128 + signum
        during = f"during {where}" if where else "between jobs"
        super().__init__(f"study run interrupted by {signal.Signals(signum).name} {during}; rerun to resume")


class _Stop:
    """The signal this run got (if any) and the guards of the jobs running now (several under ``study run
    --parallel``), for the signal handler."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.since: float | None = None
        self.running: set[subprocess.Popen[bytes]] = set()

    def handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum, self.since = signum, time.monotonic()
        self.forward(signum)

    def forward(self, signum: int) -> None:
        for proc in list(self.running):
            if proc.returncode is None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signum)

    def check(self, where: str | None) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, where)


STOP = _Stop()
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """For the block: SIGTERM and SIGINT are passed on to the running job, which is then recorded as
    ``interrupted``, and :class:`Interrupted` ends the run (in the main thread only; one that was ignored
    when the block began stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal ignored from the start stays ignored (`study run &` in a script: the script's Ctrl-C is not ours)
    before = {
        s: signal.signal(s, STOP.handle) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN
    }
    STOP.signum = STOP.since = None
    try:
        yield
        STOP.check(None)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        STOP.signum = STOP.since = None
