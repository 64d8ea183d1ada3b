"""Two processes fetching one file wait for each other: one request, never two writers of one partial file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

from helpers import SlowServer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FETCH = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from longify.data.fetch import fetch_file
url, dest, digest, size = sys.argv[1:]
stats = fetch_file([url], dest, sha256=digest, size=int(size), retries=0, progress=False)
print(stats.requests, stats.received)
"""


def test_two_processes_fetching_one_file_wait_for_each_other(tmp_path: Path) -> None:
    """The second process waits for the first one's lock on the file, then finds it complete: one request,
    never two writers of one partial file."""
    body = bytes(range(256)) * 600
    server = SlowServer({"f.bin": body}, cut=False)
    dest = tmp_path / "dl" / "f.bin"
    args = [sys.executable, "-c", FETCH, f"{server.url}/f.bin", str(dest), sha(body), str(len(body))]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with logs[0].open("wb") as err0, logs[1].open("wb") as err1:
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err0))
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:  # the first holds the lock
                time.sleep(0.05)
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err1))
            while time.monotonic() < deadline:  # until it waits (fixed) or sends its own request (old)
                if "waiting for" in logs[1].read_text() or len(server.requests) > 1:
                    break
                time.sleep(0.05)
            server.release.set()
            outs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.close()
    assert [p.returncode for p in procs] == [0, 0], [log.read_text() for log in logs]
    assert "waiting for" in logs[1].read_text()
    assert server.names() == ["f.bin"]
    assert outs == [["1", str(len(body))], ["0", "0"]]
    assert dest.read_bytes() == body
