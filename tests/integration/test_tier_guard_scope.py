"""The unit tier's guard (tests/conftest.py) stops at tests/unit: in tests/integration a test starts
subprocesses, processes and a Trainer freely (tests/integration/test_tier_guard.py checks the guard itself)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
INI = "[pytest]\nmarkers =\n    unit: in-process\n    integration: end to end\n    slow: long\n"

STARTING = """
import multiprocessing
import os
import subprocess
import sys


def test_subprocess_run():
    assert subprocess.run([sys.executable, "-c", "print(2)"], capture_output=True, text=True).stdout == "2\\n"


def test_os_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


def test_multiprocessing():
    process = multiprocessing.get_context("fork").Process(target=os.getpid)
    process.start()
    process.join()
    assert process.exitcode == 0


def test_trainer_construction_is_reached():
    import pytest
    from transformers import Trainer

    with pytest.raises(Exception) as err:
        Trainer()  # no model: transformers' own error, not the guard's
    assert "unit test" not in str(err.value)
"""


def test_an_integration_test_starts_processes_freely(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGIFY_CACHE", os.environ["LONGIFY_CACHE"])  # the copied conftest sets its own
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini(INI)
    test = pytester.path / "integration" / "test_starting.py"
    test.parent.mkdir()
    test.write_text(STARTING, encoding="utf-8")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
