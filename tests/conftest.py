"""Shared fixtures and the test tiers.

Offline always; tiny source models of every family, built once per session. Each test file lives in
``tests/unit/`` (in-process: no Trainer, no subprocess, no torchrun; ``make test-fast``) or
``tests/integration/`` (small end-to-end runs on tiny models); its folder gives it the ``unit`` or
``integration`` marker, and a guard fails any unit test (its fixtures included) that starts a process, a
``transformers.Trainer`` or a torchrun. ``slow`` stays an opt-in marker (``make test-all``).
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# keep the tests' tokenised-block caches out of the user's ~/.cache/longify
os.environ["LONGIFY_CACHE"] = tempfile.mkdtemp(prefix="longify-test-cache-")

import _posixsubprocess
import multiprocessing.process
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import CONVERT, FAMILIES, REPO, SOURCE_LEN, AttentionCalls, require_mount, tiny_qa_setup
from longify.runinfo import git_hash
from longify.tiny import save_tiny

git_hash()  # the run records' commit: asked once per process (a subprocess), here, before any test

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration")  # one folder each under tests/; `slow` is a marker


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the folder under tests/ that holds it (None outside both)."""
    parts = path.resolve().relative_to(TESTS).parts if path.resolve().is_relative_to(TESTS) else ()
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets its folder's marker (``unit`` or ``integration``); a test file outside both folders, or
    a tier marker written by hand, stops the run, so that no test can lose its tier."""
    wrong = []
    for item in items:
        tier = tier_of(item.path)
        written = [m.name for m in item.iter_markers() if m.name in TIERS]
        if tier is None:
            wrong.append(f"{item.nodeid}: test files go in tests/unit/ or tests/integration/")
        elif written:
            wrong.append(
                f"{item.nodeid}: marker {written[0]!r} written by hand; the folder (tests/{tier}/) sets it"
            )
        else:
            item.add_marker(getattr(pytest.mark, tier))
    if wrong:
        raise pytest.UsageError("\n".join(sorted(set(wrong))))


def _launchers() -> list[tuple[object, str, str]]:
    """(owner, attribute, what it starts) for every way a unit test could leave the process or run a Trainer."""
    import torch.distributed
    import transformers.trainer

    found: list[tuple[object, str, str]] = [
        (subprocess.Popen, "__init__", "a subprocess (subprocess.Popen: run, call, check_output, Popen)"),
        (os, "system", "a subprocess (os.system)"),
        (os, "fork", "a process (os.fork)"),
        (os, "forkpty", "a process (os.forkpty)"),
        (os, "posix_spawn", "a process (os.posix_spawn)"),
        (os, "posix_spawnp", "a process (os.posix_spawnp)"),
        (_posixsubprocess, "fork_exec", "a process (fork and exec: multiprocessing's spawn, forkserver)"),
        (multiprocessing.process.BaseProcess, "start", "a process (multiprocessing Process.start)"),
        (transformers.trainer.Trainer, "__init__", "a transformers.Trainer"),
    ]
    if torch.distributed.is_available():
        import torch.distributed.launcher.api

        found.append(
            (torch.distributed.launcher.api, "launch_agent", "a torchrun (torch.distributed launcher)")
        )
    return [(owner, name, what) for owner, name, what in found if hasattr(owner, name)]


def _refusal(nodeid: str, what: str, started: list[str]) -> Callable[..., object]:
    def refuse(*args: object, **kwargs: object) -> object:
        started.append(what)
        pytest.fail(
            f"{nodeid}: a unit test started {what}; unit tests stay in-process (no Trainer, no subprocess, "
            "no torchrun): move it to tests/integration/ or give it an in-process stand-in",
            pytrace=False,
        )

    return refuse


@contextmanager
def _in_process_only(item: pytest.Item) -> Iterator[None]:
    """For a unit test: every process start, Trainer or torchrun fails the test, naming what it started; one
    that the code under test caught and swallowed still fails the test at the end of the phase."""
    if tier_of(item.path) != "unit":
        yield
        return
    started: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, what in _launchers():
            patch.setattr(owner, name, _refusal(item.nodeid, what, started))
        yield
    if started:
        pytest.fail(f"{item.nodeid}: a unit test started {started[0]} (the error was caught)", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # a hook rather than an autouse fixture: module- and session-scoped fixtures are set up before any
    # function-scoped fixture, and the guard covers them too
    with _in_process_only(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _in_process_only(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with _in_process_only(item):
        return (yield)


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny MaskedLM + tokenizer per family, accepting SOURCE_LEN tokens."""
    root = tmp_path_factory.mktemp("sources")
    return {fam: save_tiny(fam, root / fam, max_len=SOURCE_LEN) for fam in FAMILIES}


@pytest.fixture(scope="session")
def xquad_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our small XQuAD-format fixtures under their official names (``xquad.{lang}.json``), laid out at test
    time so that no file in the repository carries the name of the real XQuAD files in ../shared/data."""
    out = tmp_path_factory.mktemp("xquad")
    for src in (REPO / "tests" / "fixtures" / "qa" / "xquad").glob("*.squad-format.json"):
        (out / f"xquad.{src.name.split('.')[0]}.json").write_bytes(src.read_bytes())
    return out


@pytest.fixture
def seen():
    """Records every Longformer self-attention call made during the test (``helpers.AttentionCalls``)."""
    import torch

    record = AttentionCalls()
    handle = torch.nn.modules.module.register_module_forward_hook(record.hook)
    try:
        yield record
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def long_model(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny RoBERTa converted by ``longify convert`` (``helpers.CONVERT``: 128 positions, window 32)."""
    from longify.cli import main

    out = tmp_path_factory.mktemp("long") / "long"
    assert main(["convert", str(tiny_sources["roberta"]), str(out), *CONVERT]) == 0
    return out


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[Path, str], Path]]:
    """``tmpfs(path, options)`` mounts a tmpfs there (``ro``, ``size=64k``: a real read-only or full file
    system); all are unmounted at the end. The test skips where this process may not mount (not root)."""
    require_mount()
    mounted: list[Path] = []

    def mount(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def one_thread():
    """torch runs on one thread for the test (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny QA model with 12 training and 6 dev questions (one per test module)."""
    return tiny_qa_setup(tmp_path_factory.mktemp("qa-setup"), 12, 6)
