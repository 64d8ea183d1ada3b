"""A study job's guard: ``python -m longify.study.guard FD -- COMMAND...`` runs one job's command so that no
process of the job outlives the ``study run`` that started it, whatever way that run ends.

The guard reads the pipe ``FD`` whose only writer is the runner: end of file means the runner is gone
(exited, or killed with SIGKILL). The job's command runs in a process group of its own and dies with the
guard (``PR_SET_PDEATHSIG``); the guard is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process
the job starts, also one in a session of its own (torchrun's workers), stays its descendant even when its
parent dies. When the runner is gone, the guard kills all of them; when the job's command ends, it kills
what the command left behind, then ends as the command did. SIGTERM, SIGINT and SIGHUP sent to the guard
are passed on to the job's process group. Linux only for the two ``prctl`` calls; elsewhere the job still
runs, without them. Imports only the standard library: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_SECONDS = 0.5  # without pidfd_open: how often the job's end is looked at
KILL_SECONDS = 10.0  # at most this long to kill a job's processes (they die at once: SIGKILL)


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where there is no such call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _job_preexec(guard: int) -> None:
    """In the job's process before its command: a process group of its own, killed when the guard dies."""
    os.setpgid(0, 0)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != guard:  # the guard died before PDEATHSIG was set
        os._exit(1)


def descendants(root: int) -> list[int]:
    """The PIDs of the live (not zombie) processes below ``root``, from ``/proc`` (none found without it)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            found.append(pid)
            stack.append(pid)
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def kill_tree() -> None:
    """SIGKILL every process below this one (orphans come to us: we are their subreaper) until none is left."""
    deadline = time.monotonic() + KILL_SECONDS
    while (pids := descendants(os.getpid())) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        _reap()


def _end_like(returncode: int) -> int:
    """Exit as the job did: by its signal (so the runner sees the same returncode), else with its code."""
    if returncode < 0:
        with contextlib.suppress(OSError, ValueError):  # (SIGKILL has no handler to reset)
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
        return 128 - returncode
    return returncode


def _runner_gone(fd: int) -> bool:
    try:
        return os.read(fd, 64) == b""
    except OSError:
        return True


def guard(fd: int, command: list[str]) -> int:
    """Run ``command`` until it ends (its exit status) or the runner holding ``fd``'s other end is gone."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    job: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if job is None:
            pending.append(signum)
        else:
            with contextlib.suppress(OSError):
                os.killpg(job.pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    me = os.getpid()
    job = subprocess.Popen(command, preexec_fn=lambda: _job_preexec(me))  # the guard has one thread
    for signum in pending:
        forward(signum, None)
    waits = [fd]
    with contextlib.suppress(AttributeError, OSError):
        waits.append(os.pidfd_open(job.pid))
    while True:
        ready, _, _ = select.select(waits, [], [], POLL_SECONDS)
        if fd in ready and _runner_gone(fd):
            print("longify study: the study run ended; stopping this job", file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                os.killpg(job.pid, signal.SIGKILL)
            kill_tree()
            return 137
        returncode = job.poll()
        if returncode is not None:
            kill_tree()
            return _end_like(returncode)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m longify.study.guard FD -- COMMAND...", file=sys.stderr)
        return 2
    return guard(int(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
