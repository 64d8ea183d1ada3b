"""``python -m longify.cli`` as a user runs it (a subprocess): ``--debug`` shows the traceback; without it, a
bad input is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys


def test_debug_shows_traceback(tmp_path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "longify.cli",
        "--debug",
        "convert",
        str(tmp_path / "nope"),
        str(tmp_path / "o"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode != 0 and "Traceback" in res.stderr
    cmd.remove("--debug")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
