"""The test tiers (tests/conftest.py): a test's folder gives it its marker, a file outside both folders or a
tier marker written by hand stops the run, and a test in tests/unit that starts a process, a
``transformers.Trainer`` or a torchrun fails, naming what it started, fixtures and swallowed errors included.

Each case runs a small test file under a copy of the project's conftest in pytest's ``pytester``, in this
process; in tests/unit nothing is started (the guard refuses it first). The same file under
tests/integration really runs: tests/integration/test_tier_guard_scope.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
INI = """[pytest]
markers =
    unit: in-process
    integration: end to end
    slow: long
"""

# every way out of the process the guard closes; the test names say which
SPAWNING = """
import multiprocessing
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def made_by_a_process():
    return subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True).stdout


def test_subprocess_run():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_check_output():
    subprocess.check_output(["true"])


def test_os_system():
    os.system("true")


def test_os_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_multiprocessing():
    process = multiprocessing.get_context("fork").Process(target=os.getpid)
    process.start()
    process.join()


def test_swallowed():
    try:
        subprocess.run(["true"])
    except BaseException:
        pass


def test_trainer():
    from transformers import Trainer

    Trainer()


def test_torchrun():
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=1, run_id="guard", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0)
    elastic_launch(config, os.getpid)()


def test_in_a_fixture(made_by_a_process):
    assert made_by_a_process == "1\\n"


def test_in_process():
    assert sum(range(4)) == 6
"""

STARTED = {
    "test_subprocess_run": "a subprocess (subprocess.Popen",
    "test_check_output": "a subprocess (subprocess.Popen",
    "test_os_system": "a subprocess (os.system)",
    "test_os_fork": "a process (os.fork)",
    "test_multiprocessing": "a process (multiprocessing Process.start)",
    "test_swallowed": "a subprocess (subprocess.Popen: run, call, check_output, Popen) (the error was caught)",
    "test_trainer": "a transformers.Trainer",
    "test_torchrun": "a torchrun (torch.distributed launcher)",
    "test_in_a_fixture": "a subprocess (subprocess.Popen",
}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with the project's conftest (its copy sets LONGIFY_CACHE anew: put back after)."""
    monkeypatch.setenv("LONGIFY_CACHE", os.environ["LONGIFY_CACHE"])
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini(INI)
    return pytester


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_unit_test_that_starts_anything_fails_naming_it(project: pytest.Pytester) -> None:
    write(project.path, "unit/test_spawning.py", SPAWNING)
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "-rfE")
    result.assert_outcomes(passed=1, failed=len(STARTED) - 1, errors=1)
    out = result.stdout.str()
    for test, what in STARTED.items():
        assert f"unit/test_spawning.py::{test}: a unit test started {what}" in out, test
    assert "move it to tests/integration/" in out


def test_the_folder_sets_the_marker(project: pytest.Pytester) -> None:
    write(project.path, "unit/test_here.py", "def test_u():\n    pass\n")
    write(project.path, "integration/test_there.py", "def test_i():\n    pass\n")
    for tier, test in (("unit", "test_u"), ("integration", "test_i")):
        result = project.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "-m", tier)
        assert [line.split("::")[-1] for line in result.outlines if "::" in line] == [test]


@pytest.mark.parametrize(
    ("relative", "text", "message"),
    [
        ("test_loose.py", "def test_x():\n    pass\n", "test files go in tests/unit/ or tests/integration/"),
        (
            "unit/test_marked.py",
            "import pytest\n\n\n@pytest.mark.integration\ndef test_x():\n    pass\n",
            "marker 'integration' written by hand; the folder (tests/unit/) sets it",
        ),
    ],
    ids=["outside-both-folders", "marker-by-hand"],
)
def test_a_test_that_could_lose_its_tier_stops_the_run(
    project: pytest.Pytester, relative: str, text: str, message: str
) -> None:
    write(project.path, relative, text)
    result = project.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{relative}::test_x: {message}" in result.stderr.str()
