"""`longify study` plans: spec errors are one line each, content ids are stable and change with an option, the
thesis plan lists every job, and the demo study's spec plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, tiny_spec, write_spec
from longify.cli import main
from longify.errors import LongifyError
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec


def test_spec_errors_are_one_line_each(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "bad.yaml",
        """
output_dir: out
seeds: [1, 2, 1]
models:
  a: {source: x, convert: {max_poss: 4096}}
  b: {from: missing}
  c: {from: d}
  d: {from: c}
finetune: {train_file: t.json}
evaluate:
  e: {task: no-such-task}
""",
    )
    with pytest.raises(LongifyError) as err:
        load_spec(spec)
    lines = str(err.value).splitlines()
    assert all(line.startswith(f"{spec}: ") for line in lines)
    text = "\n".join(lines)
    assert "models.a.convert.max_poss: unknown key" in text
    assert "models.b.from: missing: no such model" in text
    assert "evaluate.e.task: unknown task 'no-such-task'" in text
    assert sum("dependency cycle" in line for line in lines) == 1
    assert "seeds: 1 listed twice" in text
    assert len(lines) == 5


def test_ids_are_stable_and_change_with_an_option(tmp_path: Path) -> None:
    source = tmp_path / "src"
    first = {j.folder for j in plan_jobs(load_spec(tiny_spec(tmp_path, source)))}
    again = {j.folder for j in plan_jobs(load_spec(tiny_spec(tmp_path, source), tmp_path / "elsewhere"))}
    assert first == again  # the output folder is not part of the ids
    text = (tmp_path / "study.yaml").read_text().replace("max_steps: 4", "max_steps: 5")
    changed = {j.folder for j in plan_jobs(load_spec(write_spec(tmp_path / "study.yaml", text)))}
    kept = first & changed
    assert {f.split("-")[0] for f in first - kept} == {"pretrain", "train", "evaluate"}
    assert {f.split("-")[0] for f in kept} == {"convert", "train", "evaluate"}  # convert + the short model's


def test_thesis_plan_lists_every_job(capsys, monkeypatch) -> None:
    monkeypatch.delenv("STUDY_DIR", raising=False)
    assert main(["study", "plan", str(REPO / "configs" / "thesis.yaml"), "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    by_stage: dict[str, list[dict]] = {}
    for job in jobs:
        by_stage.setdefault(job["stage"], []).append(job)
    long = sorted(
        f"{s}-4096{t}" for s in ("roberta-base", "xlm-roberta-base") for t in ("", "-full", "-bigbird")
    )
    assert sorted(j["model"] for j in by_stage["convert"]) == long
    assert sorted(j["model"] for j in by_stage["pretrain"]) == long
    models = {"roberta-base", "xlm-roberta-base", "allenai/longformer-base-4096", *long}
    assert {(j["model"], j["seed"]) for j in by_stage["train"]} == {
        (m, s) for m in models for s in (42, 43, 44)
    }
    tasks = {j["task"] for j in by_stage["evaluate"]}
    assert {"squad", "xquad", "mlqa", "tydiqa", "triviaqa-wikipedia", "triviaqa-web"} <= tasks
    assert len(by_stage["evaluate"]) == 9 * 3 * 8 and all(j["status"] == "pending" for j in jobs)


def test_demo_study_spec_plans(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STUDY_DIR", str(tmp_path))
    jobs = plan_jobs(load_spec(REPO / "src" / "longify" / "demo" / "study.yaml"))
    assert {j.seed for j in jobs if j.stage == "train"} == {42, 43}
    assert [j.stage for j in jobs[:2]] == ["prepare", "prepare"]
    seen: set[str] = set()
    for job in jobs:  # dependency order
        assert set(job.deps) <= seen
        seen.add(job.id)
    assert sum(j.stage in ("convert", "pretrain") for j in jobs) == 4 and len(jobs) == 2 + 4 + 6 + 12
    assert {j.target for j in jobs if j.stage == "convert"} == {"longformer", "full"}
