"""Each demo study spec has one copy, the package's (it ships in the wheel and ``longify demo`` runs it);
``longify demo [--real] --print-spec`` prints it to copy, edit and run with ``longify study run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO
from longify.cli import main
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec

SHIPPED = REPO / "src" / "longify" / "demo"
SPECS = {"study": [], "real": ["--real"]}


def test_configs_holds_no_copy_of_a_shipped_spec() -> None:
    shipped = {p.read_bytes(): p.name for p in SHIPPED.glob("*.yaml")}
    assert shipped
    for path in sorted((REPO / "configs").iterdir()):
        assert not path.is_symlink(), f"{path.name} links to {path.resolve()}"
        assert path.read_bytes() not in shipped, f"{path.name} copies demo/{shipped[path.read_bytes()]}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_print_spec_prints_the_shipped_spec_and_writes_nothing(
    name: str, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *SPECS[name], "--print-spec"]) == 0
    assert capsys.readouterr().out == (SHIPPED / f"{name}.yaml").read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_printed_copy_plans_the_demo_jobs(name: str, tmp_path, monkeypatch, capsys) -> None:
    """The header's recipe: the copy is the same study (the same job ids) as the shipped spec."""
    monkeypatch.setenv("STUDY_DIR", str(tmp_path / "out"))
    assert main(["demo", *SPECS[name], "--print-spec"]) == 0
    copy = tmp_path / "copy.yaml"
    copy.write_text(capsys.readouterr().out, encoding="utf-8")
    assert copy.read_text(encoding="utf-8").startswith(f"# longify demo {' '.join(SPECS[name])}".rstrip())
    ids = [job.id for job in plan_jobs(load_spec(copy))]
    assert ids and ids == [job.id for job in plan_jobs(load_spec(SHIPPED / f"{name}.yaml"))]


def test_print_spec_of_a_given_spec_prints_it_or_names_it_in_one_line(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("output_dir: x\n", encoding="utf-8")
    assert main(["demo", "--spec", str(mine), "--print-spec"]) == 0
    assert capsys.readouterr().out == "output_dir: x\n"
    assert main(["demo", "--spec", str(tmp_path / "missing.yaml"), "--print-spec"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing.yaml" in err, err
