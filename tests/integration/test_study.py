"""`longify study run` end to end on a tiny study: SIGKILL and rerun, a failing job, another spec or a moved
study in the same folder, a second run of the same study refused, the submitit and Slurm executors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import lock_held_elsewhere, tiny_spec, write_spec
from longify.cli import main
from longify.study.jobs import plan_jobs
from longify.study.runner import job_status
from longify.study.spec import load_spec

RESULT_KEYS = {"model", "source_model", "eval_set", "task", "language", "seed", "exact_match", "f1", "total",
               "job_id", "results_path", "predictions_path", "question_scores_path"}  # fmt: skip


def study(spec: Path, *extra: str, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "longify.cli", "study", "run", str(spec), *extra],
                          capture_output=True, text=True, env=env, check=False, **kw)  # fmt: skip


def read_rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for row in rows:  # relative to the study folder: runs in two folders compare equal, a copy reads its own
        for key in ("results_path", "predictions_path", "question_scores_path"):
            assert not Path(row[key]).is_absolute() and (out / row[key]).is_file(), row[key]
    return rows


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_sources) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("study")
    spec = tiny_spec(tmp, tiny_sources["roberta"])
    return spec, study(spec)


def test_tiny_study_runs_to_the_end(finished, capsys) -> None:
    spec, run = finished
    assert run.returncode == 0, run.stdout + run.stderr
    out = spec.parent / "out"
    assert len([line for line in run.stdout.splitlines() if line.startswith("[")]) == 6
    rows = read_rows(out)
    assert all(set(r) == RESULT_KEYS for r in rows)
    assert {(r["model"], r["language"]) for r in rows} == {
        (m, lang) for m in ("tiny", "tiny-256") for lang in ("en", "average")
    }
    assert {r["source_model"] for r in rows if r["model"] == "tiny-256"} == {"tiny"}
    for row in rows:
        results = json.loads((out / row["results_path"]).read_text())
        scores = [json.loads(x) for x in (out / row["question_scores_path"]).read_text().splitlines()]
        assert len(scores) == row["total"] == 6
        for key in ("exact_match", "f1"):  # the per-question file averages to results.json
            assert sum(s[key] for s in scores) / len(scores) == pytest.approx(
                results["per_language"]["en"][key]
            )
    curves = [json.loads(x) for x in (out / "pretrain_curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves] == [0, 2, 4] and all(c["model"] == "tiny-256" for c in curves)
    for folder in (out / "jobs").iterdir():
        record = json.loads((folder / "job.json").read_text())
        assert record["status"] == "done" and (folder / "command.txt").read_text().strip()
    assert main(["study", "status", str(spec)]) == 0
    assert "6 jobs: 6 done" in capsys.readouterr().out
    again = study(spec)  # nothing is redone
    assert again.returncode == 0 and again.stdout.count("done (earlier)") == 6


def _kill_when(proc: subprocess.Popen, marker: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # at once: a tiny job can finish within a second of its marker
    proc.wait()


def test_sigkill_twice_then_rerun_gives_the_same_results(finished, tmp_path, tiny_sources) -> None:
    spec_done, _ = finished
    spec = tiny_spec(tmp_path, tiny_sources["roberta"])
    jobs = {j.stage + str(j.model): j for j in plan_jobs(load_spec(spec))}
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "longify.cli", "study", "run", str(spec)]
    killed: list[str] = []
    for marker in (jobs["pretraintiny-256"].output(out) / "checkpoint-2", jobs["traintiny-256"].output(out)):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        _kill_when(proc, marker)
        killed.append(
            job_status(
                out, jobs["pretraintiny-256"] if "checkpoint" in marker.name else jobs["traintiny-256"]
            )
        )
    assert "interrupted" in killed, killed  # at least one kill landed inside a job
    run = study(spec)
    assert run.returncode == 0, run.stdout + run.stderr
    # the data paths differ between the two folders (and so the ids): compare everything else
    same = [k for k in sorted(RESULT_KEYS) if k not in ("job_id", "results_path", "predictions_path",
                                                      "question_scores_path")]  # fmt: skip
    assert [[r[k] for k in same] for r in read_rows(out)] == [
        [r[k] for k in same] for r in read_rows(spec_done.parent / "out")
    ]


def test_a_failing_job_leaves_the_others_done(tmp_path, tiny_sources) -> None:
    bad = f"\n  broken: {{task: squad, predict_file: {tmp_path}/no-such-file.json, doc_stride: 32}}"
    spec = tiny_spec(tmp_path, tiny_sources["roberta"], evaluate=bad, long=False)
    run = study(spec)
    assert run.returncode == 1
    failed = [line for line in run.stdout.splitlines() if line.startswith("[") and " failed " in line]
    assert len(failed) == 1 and "evaluate-tiny-broken" in failed[0] and "no-such-file.json" in failed[0]
    assert "1 failed" in run.stdout and "2 done" in run.stdout
    rows = read_rows(tmp_path / "out")
    assert {r["eval_set"] for r in rows} == {"dev"}


def test_another_spec_into_the_same_folder_says_which_rows_results_jsonl_lost(
    finished, tmp_path, capsys
) -> None:
    """A spec without the long model, run into a finished study's folder, says which rows of results.jsonl it
    drops (and redoes no job); the rows come back, with no job redone, when the first spec runs again."""
    spec_done, _ = finished
    out = tmp_path / "out"
    shutil.copytree(spec_done.parent / "out", out)
    text = spec_done.read_text().replace(str(spec_done.parent / "out"), str(out))
    full = write_spec(tmp_path / "full.yaml", text)
    start, end = text.index("\n  tiny-256:"), text.index("\nfinetune:")
    short = write_spec(tmp_path / "short.yaml", text[:start] + text[end:])
    assert main(["study", "run", str(short)]) == 0
    said = capsys.readouterr().out
    assert said.count("done (earlier)") == 2  # train and evaluate of the short model: nothing redone
    assert f"{out / 'results.jsonl'} no longer has 2 rows from 1 evaluation job(s) not in {short}" in said
    assert {r["model"] for r in read_rows(out)} == {"tiny"}
    assert main(["study", "run", str(full)]) == 0
    said = capsys.readouterr().out
    assert "no longer has" not in said and said.count("done (earlier)") == 6
    assert read_rows(out) == read_rows(spec_done.parent / "out")


def test_a_moved_study_is_reported_from_its_own_files(finished, tmp_path, capsys) -> None:
    """results.jsonl holds paths relative to the study: a copied study's report reads its own question
    scores, never the original's."""
    spec_done, _ = finished
    moved = tmp_path / "moved"
    shutil.copytree(spec_done.parent / "out", moved)
    assert main(["report", str(moved), "--out", str(tmp_path / "report")]) == 0
    gone = moved / read_rows(moved)[0]["question_scores_path"]
    gone.unlink()
    capsys.readouterr()
    assert main(["report", str(moved), "--out", str(tmp_path / "report2")]) == 2
    assert f"{gone}: file not found" in capsys.readouterr().err


def test_an_interrupted_evaluation_of_a_moved_study_reruns(finished, tmp_path, capsys) -> None:
    """An evaluate job killed after its results.json landed, in a study copied elsewhere, reruns to the
    original's results: the moved model path is not "other arguments" (a spec cannot pass
    --overwrite_output_dir)."""
    spec_done, _ = finished
    moved = tmp_path / "out"
    shutil.copytree(spec_done.parent / "out", moved)
    spec = write_spec(
        tmp_path / "moved.yaml", spec_done.read_text().replace(str(spec_done.parent / "out"), str(moved))
    )
    job = next(j for j in plan_jobs(load_spec(spec)) if j.stage == "evaluate" and j.model == "tiny-256")
    record_path = moved / "jobs" / job.folder / "job.json"
    record = json.loads(record_path.read_text())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that has exited: the job's process was killed
    record_path.write_text(json.dumps({**record, "status": "running", "pid": gone.pid}))
    assert main(["study", "status", str(spec)]) == 0 and "1 interrupted" in capsys.readouterr().out
    assert main(["study", "run", str(spec)]) == 0, capsys.readouterr()
    assert read_rows(moved) == read_rows(spec_done.parent / "out")


def test_submitit_local_executor_runs_the_pending_jobs(finished, capsys) -> None:
    import submitit

    from longify.study.results import collect
    from longify.study.slurm import run_submitit

    spec_done, _ = finished
    spec = load_spec(spec_done)
    extra = (
        spec_done.read_text()
        + f"  again: {{task: squad, predict_file: {spec_done.parent}/data/dev.json, doc_stride: 32}}\n"
    )
    spec = load_spec(write_spec(spec_done.parent / "study2.yaml", extra))
    jobs = plan_jobs(spec)
    out = spec.output_dir
    executor = submitit.LocalExecutor(folder=str(out / "submitit"))
    status = run_submitit(jobs, out, {j.id: j for j in jobs}, executor)
    assert sorted(status.values()).count("done") == len(jobs)
    assert capsys.readouterr().out.count("done (earlier)") == len(jobs) - 2  # the new eval set, both models
    collect(jobs, out)
    assert {r["eval_set"] for r in read_rows(out)} == {"dev", "again"}


def test_a_second_run_of_the_same_study_is_refused(tmp_path, capsys) -> None:
    """Two `study run` into one folder would run the same jobs twice: the second gets one line and exit 2."""
    spec = tiny_spec(tmp_path, tmp_path / "src")
    with lock_held_elsewhere(tmp_path / "out") as holder:
        assert main(["study", "run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pid {holder.pid}" in err, err
    assert not (tmp_path / "out" / "jobs").exists()


FAKE_SBATCH = """#!/bin/sh
# records the submission script, answers as sbatch does
n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 ))
echo $n > "$FAKE_SLURM/next"
cp "$1" "$FAKE_SLURM/job-$n.sh"
echo "Submitted batch job $n"
"""
FAKE_SQUEUE = """#!/bin/sh
cat "$FAKE_SLURM/queue" 2>/dev/null
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """`sbatch` and `squeue` stand-ins on the PATH: submissions are recorded, the queue is a file."""
    from longify.study import squeue

    folder = tmp_path / "fake-slurm"
    (folder / "bin").mkdir(parents=True)
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE), ("srun", "#!/bin/sh\n")):
        (folder / "bin" / name).write_text(text)
        (folder / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    monkeypatch.setattr(squeue, "CACHE_SECONDS", 0.0)
    monkeypatch.setattr(squeue, "_cache", None)
    return folder


def _submissions(fake: Path) -> dict[str, str]:
    return {p.stem.removeprefix("job-"): p.read_text() for p in sorted(fake.glob("job-*.sh"))}


def test_slurm_submissions_follow_the_dag_and_are_never_doubled(tmp_path, fake_slurm, capsys) -> None:
    """--executor slurm: afterok on the Slurm ids of the jobs it needs, kill-on-invalid-dep, a GPU request
    only for jobs that ask for one; a second run while they are queued submits nothing; jobs that left the
    queue without a final record are interrupted and submitted again."""
    spec = tiny_spec(tmp_path, tmp_path / "src", seeds="[1, 2]")
    jobs = plan_jobs(load_spec(spec))
    assert main(["study", "run", str(spec), "--executor", "slurm"]) == 0
    assert "jobs are in Slurm's queue" in capsys.readouterr().out
    sent = _submissions(fake_slurm)
    assert len(sent) == len(jobs)
    out = tmp_path / "out"
    slurm_id = {
        j.id: json.loads((out / "jobs" / j.folder / "job.json").read_text())["slurm_job_id"] for j in jobs
    }
    for job in jobs:
        script = sent[slurm_id[job.id]]
        assert "#SBATCH --kill-on-invalid-dep=yes" in script
        waits = sorted(slurm_id[d] for d in job.deps)
        if waits:
            line = next(x for x in script.splitlines() if "--dependency=" in x)
            assert sorted(line.split("afterok:")[1].split(":")) == waits, job.folder
        else:
            assert "--dependency" not in script
        assert ("--gpus-per-node=1" in script) == (job.stage not in ("prepare", "convert")), job.folder

    (fake_slurm / "queue").write_text("".join(f"{i} PENDING\n" for i in slurm_id.values()))
    assert main(["study", "run", str(spec), "--executor", "slurm"]) == 0
    assert len(_submissions(fake_slurm)) == len(jobs)  # nothing submitted twice
    assert capsys.readouterr().out.count("submitted earlier") == len(jobs)
    assert {job_status(out, j) for j in jobs} == {"submitted"}

    (fake_slurm / "queue").write_text("")  # they left the queue without writing job.json: interrupted
    assert {job_status(out, j) for j in jobs} == {"interrupted"}
    assert main(["study", "run", str(spec), "--executor", "slurm"]) == 0
    assert len(_submissions(fake_slurm)) == 2 * len(jobs)


def test_sbatch_refusing_a_job_is_one_line(tmp_path, fake_slurm, capsys) -> None:
    (fake_slurm / "bin" / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: Invalid account' >&2\nexit 1\n"
    )
    spec = tiny_spec(tmp_path, tmp_path / "src")
    assert main(["study", "run", str(spec), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    first = plan_jobs(load_spec(spec))[0]
    assert err == [f"longify: error: slurm: sbatch refused {first.folder}: sbatch: error: Invalid account"]


def _slurm_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _slurm_answers(), reason="needs a Slurm cluster (sinfo) whose nodes share this disk")
def test_real_slurm_gives_the_local_results_and_skips_a_failed_jobs_dependents(finished, tmp_path) -> None:
    """The tiny study through sbatch/afterok on a real Slurm (CPU jobs: gpus 0), followed with --wait: the
    same results.jsonl as the local run; an evaluation set whose file is missing fails, and only it."""
    spec_done, _ = finished
    raw = yaml.safe_load(spec_done.read_text())
    raw["output_dir"] = str(tmp_path / "out")
    raw["finetune"]["gpus"] = 0
    for model in raw["models"].values():
        model["gpus"] = 0
    raw["evaluate"]["broken"] = {"task": "squad", "predict_file": str(tmp_path / "missing.json")}
    spec = write_spec(tmp_path / "slurm.yaml", yaml.safe_dump(raw))
    run = study(spec, "--executor", "slurm", "--wait", timeout=900)
    assert run.returncode == 1, run.stdout + run.stderr
    jobs = plan_jobs(load_spec(spec))
    statuses = {j.folder: job_status(tmp_path / "out", j) for j in jobs}
    assert {s for f, s in statuses.items() if "-broken-" in f} == {"failed"}, statuses
    assert {s for f, s in statuses.items() if "-broken-" not in f} == {"done"}, statuses
    local = [r for r in read_rows(spec_done.parent / "out")]
    assert read_rows(tmp_path / "out") == local


@pytest.mark.slow
@pytest.mark.skipif(not _slurm_answers(), reason="needs a Slurm cluster (sinfo) whose nodes share this disk")
def test_real_slurm_drops_the_dependents_of_a_failed_job(tmp_path, tiny_sources) -> None:
    """A pretraining job that fails (its text file is missing) fails its Slurm job; Slurm removes the jobs
    that need it (afterok, kill-on-invalid-dep) and --wait records them as skipped; the short model's jobs
    are done."""
    raw = yaml.safe_load(tiny_spec(tmp_path, tiny_sources["roberta"]).read_text())
    raw["finetune"]["gpus"] = 0
    for model in raw["models"].values():
        model["gpus"] = 0
    raw["models"]["tiny-256"]["pretrain"]["train_file_path"] = str(tmp_path / "missing.raw")
    spec = write_spec(tmp_path / "slurm.yaml", yaml.safe_dump(raw))
    run = study(spec, "--executor", "slurm", "--wait", timeout=900)
    assert run.returncode == 1, run.stdout + run.stderr
    statuses = {
        j.folder.rsplit("-", 1)[0]: job_status(tmp_path / "out", j) for j in plan_jobs(load_spec(spec))
    }
    assert statuses == {
        "convert-tiny-256": "done",
        "pretrain-tiny-256": "failed",
        "train-tiny-256-s1": "skipped",
        "evaluate-tiny-256-dev-s1": "skipped",
        "train-tiny-s1": "done",
        "evaluate-tiny-dev-s1": "done",
    }, run.stdout
