"""What Slurm says of this user's jobs (``squeue``), for the status of jobs submitted by ``--executor slurm``.

One ``squeue`` call per few seconds serves every job of a study (a 500-job status must not call it 500
times). No ``squeue`` on the PATH (a laptop reading a study folder copied from a cluster) -> ``None``: the
caller then trusts what the job's own ``job.json`` says.
"""

from __future__ import annotations

import getpass
import subprocess
import time

CACHE_SECONDS = 5.0
QUEUED = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED")
_cache: tuple[float, dict[str, str] | None] | None = None


def _query() -> dict[str, str] | None:
    try:
        proc = subprocess.run(
            ["squeue", "--noheader", "--user", getpass.getuser(), "--format", "%i %T"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def queue_states(max_age: float | None = None) -> dict[str, str] | None:
    """Slurm job id -> state (PENDING, RUNNING, ...) of this user's jobs in the queue; None without Slurm."""
    global _cache
    now = time.monotonic()
    if _cache is None or now - _cache[0] > (CACHE_SECONDS if max_age is None else max_age):
        _cache = (now, _query())
    return _cache[1]


def slurm_status(job_id: str) -> str | None:
    """``queued`` / ``running`` while Slurm has the job, ``gone`` once it left the queue, None without Slurm."""
    states = queue_states()
    if states is None:
        return None
    state = states.get(str(job_id))
    if state is None:
        return "gone"
    return "queued" if state in QUEUED else "running"
