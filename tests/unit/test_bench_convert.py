"""``benchmarks/bench_convert.py --quick``: the conversion of an xlm-roberta source timed per target and phase,
with its peak RSS, against loading and saving the same source in the same run."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from helpers import REPO


def _bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_convert", REPO / "benchmarks" / "bench_convert.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_convert", module)  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


def test_bench_convert_quick_times_each_target_against_its_anchor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A row per target after the anchor, with every phase, its time and peak RSS over the anchor's; the CPU
    in the header and the JSON; nothing left in TMPDIR; ``convert``'s module as it was."""
    bench = _bench(monkeypatch)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    phases_before = {name: getattr(bench.CONVERT, name) for name in bench.PHASES}
    rows = bench.main(["--quick", "--max-pos", "1024", "--json", str(tmp_path / "b.json")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("# CPU ") and "threads" in printed[0]
    assert "max_pos 1024" in printed[1] and "VmHWM" in printed[1]
    assert [(r.size, r.target) for r in rows] == [
        ("quick", t) for t in ("anchor", "longformer", "full", "bigbird")
    ]
    anchor = rows[0]
    assert anchor.seconds > 0 and anchor.peak_rss_gib >= anchor.rss_before_gib > 0
    for r in rows[1:]:
        assert set(r.phases) == set(bench.COLUMNS) and all(s > 0 for s in r.phases.values())
        assert r.seconds >= sum(r.phases.values())
        assert r.x_anchor_time == pytest.approx(r.seconds / anchor.seconds)
        assert r.x_anchor_rss == pytest.approx(r.peak_rss_gib / anchor.peak_rss_gib)
    saved = json.loads((tmp_path / "b.json").read_text())
    assert set(saved["cpu"]) == {"capability", "native_bf16", "threads"} and len(saved["rows"]) == 4
    assert saved["shapes"]["quick"]["vocab"] == 1000
    assert list((tmp_path / "tmp").iterdir()) == []
    assert {name: getattr(bench.CONVERT, name) for name in bench.PHASES} == phases_before


def test_bench_convert_refuses_an_unknown_size_or_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench(monkeypatch)
    for argv in (["--sizes", "huge"], ["--targets", "longformer,reformer"]):
        with pytest.raises(SystemExit) as exit_:
            bench.parse(argv)
        assert exit_.value.code == 2
        assert "unknown size or target" in capsys.readouterr().err
