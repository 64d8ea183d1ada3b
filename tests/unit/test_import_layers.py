"""longify's modules import in layers, bottom to top: file I/O, locks, output folders, training runs,
checkpoints, model families/targets and tasks, convert / mlm / qa, study and data, report / demo / cli.
The contracts are pyproject.toml's ``[tool.importlinter]`` (``make lint``, ``make test``); here they run
in-process, with the guarantees they stand for stated one by one. Imports inside functions count."""

from __future__ import annotations

import ast
import importlib
import itertools

import grimp
import pytest
from importlinter.api import read_configuration  # importing it configures import-linter
from importlinter.application.use_cases import lint_imports
from importlinter.contracts.layers import LayersContract

from helpers import REPO

PYPROJECT = REPO / "pyproject.toml"
# the modules of layers 1-5 (file I/O, locks, output folders, training runs, checkpoints)
GROUND = ("fileio", "locks", "outdir", "runinfo", "checkpoint_files", "checkpoints", "training_run")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("longify", cache_dir=None)


def test_the_import_contracts_hold(capsys) -> None:
    """``lint-imports``, in-process (the application's ``lint_imports``: ``importlinter.cli``'s reconfigures
    logging, which silences every logger made before it, and the log checks of later tests with them)."""
    kept = lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out


def test_the_layers_contract_refuses_a_study_module_importing_the_demo(graph) -> None:
    config = read_configuration(str(PYPROJECT))
    options = next(c for c in config["contracts_options"] if c["id"] == "layers")
    contract = LayersContract(
        name=options["name"], session_options=config["session_options"], contract_options=options
    )
    assert contract.check(graph, verbose=False).kept
    injected = grimp.build_graph("longify", cache_dir=None)
    injected.add_import(importer="longify.study.runner", imported="longify.demo.files")
    check = contract.check(injected, verbose=False)
    assert not check.kept
    assert [(d["importer"], d["imported"]) for d in check.metadata["invalid_dependencies"]] == [
        ("longify.study", "longify.demo")
    ]


def test_the_run_folder_modules_import_each_other_in_no_circle(graph) -> None:
    for a, b in itertools.permutations([f"longify.{m}" for m in GROUND], 2):
        there, back = graph.find_shortest_chain(a, b), graph.find_shortest_chain(b, a)
        assert not (there and back), f"{there} and {back}"


@pytest.mark.parametrize("name", GROUND)
def test_no_longify_import_inside_a_function_of_the_run_folder_modules(name: str) -> None:
    """Each imports what it needs at the top: none needs a function-local import to dodge a circle (nor
    for start-up time: none imports torch or transformers' training loop for another of them)."""
    tree = ast.parse((REPO / "src" / "longify" / f"{name}.py").read_text(encoding="utf-8"))
    local = [
        node.lineno
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("longify"))
        or (isinstance(node, ast.Import) and any(a.name.startswith("longify") for a in node.names))
    ]
    assert local == []


def test_file_io_is_the_ground_floor(graph) -> None:
    """Umask modes, atomic writes, hashes and the disk-error mapping, importing nothing of longify but its
    errors; the modules above take them from there."""
    fileio = importlib.import_module("longify.fileio")
    names = ("current_umask", "honour_umask_tree", "write_json_atomic", "file_sha256", "write_failure")
    for name in names:
        assert getattr(fileio, name).__module__ == "longify.fileio"
        for above in ("runinfo", "outdir", "locks", "checkpoint_files"):  # one copy: theirs is fileio's
            assert getattr(importlib.import_module(f"longify.{above}"), name, None) in (
                None,
                getattr(fileio, name),
            )
    imported = graph.find_modules_directly_imported_by("longify.fileio")
    assert {m for m in imported if m.startswith("longify")} == {"longify.errors"}


def test_training_run_policy_lives_in_training_run_not_in_output_folders(graph) -> None:
    outdir = importlib.import_module("longify.outdir")
    training_run = importlib.import_module("longify.training_run")
    for name in ("resume_checkpoint", "clear_previous_run", "RUN_RECORDS", "MODEL_FILES", "training_done"):
        assert hasattr(training_run, name) and not hasattr(outdir, name)
    assert not graph.chain_exists("longify.outdir", "longify.training_run")
    assert not graph.chain_exists("longify.training_run", "longify.checkpoints")  # layer 4 under 5


def test_the_study_never_imports_the_demo(graph) -> None:
    """The demo registers its prepare kinds into the study (entry points), not the other way round."""
    assert not graph.chain_exists("longify.study", "longify.demo", as_packages=True)
    assert graph.chain_exists("longify.demo", "longify.study", as_packages=True)


def test_the_stages_resolve_dataset_names_without_the_data_command(graph) -> None:
    """qa and mlm (layer 7) find a registered dataset's folder in ``longify.catalog``; ``longify.data``
    (layer 8) imports the tasks, never the other way round."""
    for stage in ("longify.qa", "longify.mlm"):
        assert not graph.chain_exists(stage, "longify.data", as_packages=True)
        assert graph.chain_exists(stage, "longify.catalog", as_packages=True)
    assert graph.chain_exists("longify.data", "longify.qa.tasks", as_packages=True)
