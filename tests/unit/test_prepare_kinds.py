"""The kinds of study ``prepare`` job are registered by packages (entry points ``longify.prepare_kinds``), not
written into the study: the demo registers its three, and a kind from any other package is checked when a
spec is planned and run by the prepare job just as the demo's are, without a change to ``longify.study``."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from longify.cli import main as longify
from longify.study import prepare
from longify.study.prepare import ENTRY_POINTS, PrepareKind, kind_names, prepare_kind

SPEC = """\
output_dir: {out}
seeds: [1]
prepare:
  data: {{kind: toy, size: {size}}}
models:
  short: {{source: roberta-base}}
  long:
    from: short
    convert: {{max_pos: 1024}}
    pretrain: {{train_file_path: "{{prepare:data}}/wiki.train.raw", max_steps: 4}}
finetune: {{train_file: train.json, num_train_epochs: 1, gpus: 0}}
evaluate:
  dev: {{task: squad, predict_file: dev.json}}
"""


def _toy(dest: Path, size: int = 2) -> None:
    dest.mkdir()
    (dest / "data.txt").write_text("x" * size, encoding="utf-8")


TOY = PrepareKind(_toy, {"size": (2, 1)}, {"size": "bytes in data.txt"})


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Kind ``toy`` (this module's ``TOY``), registered as a package beside longify would register it."""
    toy = EntryPoint(name="toy", value=f"{__name__}:TOY", group=ENTRY_POINTS)
    monkeypatch.setattr(prepare, "entry_points", lambda group: [*entry_points(group=group), toy])
    prepare._registered.cache_clear()
    prepare.prepare_kind.cache_clear()
    yield
    prepare._registered.cache_clear()
    prepare.prepare_kind.cache_clear()


def test_the_demo_registers_its_kinds_through_entry_points() -> None:
    assert kind_names() == ("demo-data", "demo-source", "minilm")
    assert {p.value.split(":")[0] for p in entry_points(group=ENTRY_POINTS)} == {"longify.demo.prepare"}
    assert prepare_kind("demo-data").options["n_train"] == (192, 1)
    assert prepare_kind("minilm").options == {}


def test_a_kind_registered_by_another_package_is_planned_and_run(toy_registered, tmp_path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(out=tmp_path / "out", size=3), encoding="utf-8")
    assert longify(["study", "plan", str(spec)]) == 0, capsys.readouterr().err
    spec.write_text(SPEC.format(out=tmp_path / "out", size=0), encoding="utf-8")
    assert longify(["study", "plan", str(spec)]) == 2
    assert "prepare.data.size: expected a positive integer, got 0" in capsys.readouterr().err

    assert prepare.main([str(tmp_path / "made"), "--kind", "toy", "--size", "5"]) == 0
    assert (tmp_path / "made" / "data.txt").read_text(encoding="utf-8") == "xxxxx"
    assert prepare.main([str(tmp_path / "made"), "--kind", "toy"]) == 0  # made once
    assert "already made" in capsys.readouterr().out


def test_a_prepare_job_takes_only_its_own_kinds_options(toy_registered, tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_:
        prepare.main([str(tmp_path / "made"), "--kind", "toy", "--n_train", "5"])
    assert exit_.value.code == 2
    assert not (tmp_path / "made").exists()


@pytest.mark.filterwarnings("ignore:'longify.study.prepare' found in sys.modules:RuntimeWarning")  # (as -m)
def test_the_prepare_job_run_as_a_module_takes_the_registered_kinds(
    toy_registered, tmp_path, monkeypatch
) -> None:
    """As the study runs it (``python -m longify.study.prepare``, here in-process): the kinds it loads are
    those of ``longify.study.prepare``, not of the ``__main__`` copy of the module."""
    dest = tmp_path / "made"
    monkeypatch.setattr(sys, "argv", ["prepare", str(dest), "--kind", "toy", "--size", "4"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("longify.study.prepare", run_name="__main__", alter_sys=True)
    assert exit_.value.code == 0
    assert (dest / "data.txt").read_text(encoding="utf-8") == "xxxx"
