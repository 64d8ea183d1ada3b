"""The files stages exchange (longify.artifacts): each writer's file reads back as written, each reader refuses
a malformed record in one line naming the file and the field, the JSON-lines writer leaves a file that holds
its bytes already untouched, and a checkpoint's step comes from its trainer state only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from longify.artifacts import (
    PRETRAIN_METRICS_FILE,
    RESULT_KEYS,
    RESULTS_FILE,
    read_pretrain_curves,
    read_pretrain_metrics,
    read_qa_results,
    read_question_scores,
    read_study_results,
    write_pretrain_curves,
    write_pretrain_metrics,
    write_qa_results,
    write_question_scores,
    write_study_results,
)
from longify.checkpoint_files import checkpoint_step
from longify.errors import LongifyError
from longify.fileio import write_jsonl_atomic
from longify.mlm.trainer import MetricsLog
from longify.study.jobs import Job
from longify.study.results import result_rows

ROW: dict[str, Any] = {
    "model": "long", "source_model": "short", "eval_set": "xquad", "task": "xquad", "language": "de",
    "seed": 1, "exact_match": 50.0, "f1": 62.5, "total": 8, "job_id": "abc123",
    "results_path": "jobs/eval/run/results.json", "predictions_path": "jobs/eval/run/predictions.json",
    "question_scores_path": "jobs/eval/run/question_scores.jsonl",
}  # fmt: skip
CURVE = {
    "model": "long",
    "step": 4,
    "loss": 2.5,
    "bits_per_token": 3.6,
    "pseudo_bits_per_char": None,
    "job_id": "x",
}
SCORE = {"id": "q1", "language": "ελ", "exact_match": 100.0, "f1": 100.0}
QA_RESULTS: dict[str, Any] = {
    "per_language": {"de": {"exact_match": 50.0, "f1": 62.5, "total": 8, "missing": 0}},
    "average": {"exact_match": 50.0, "f1": 62.5},
    "analysis": {
        "answer_position": {"0-511": {"exact_match": 50.0, "f1": 62.5, "count": 8}},
        "context_length": {"0-511": {"exact_match": None, "f1": 62.5, "count": None}},
    },
    "seed": 1,
}
METRICS: dict[str, Any] = {
    "initial": {"step": 0, "loss": 3.0},
    "evals": [{"step": 2, "loss": 2.8}],
    "final": {"loss": 2.5, "bits_per_token": 3.6},
    "steps": 4,
    "finished": True,
}


def test_study_results_round_trip_in_schema_order(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    shuffled = {k: ROW[k] for k in reversed(RESULT_KEYS)}
    write_study_results(path, [shuffled, {**ROW, "language": "average"}])
    assert read_study_results(path) == [(1, ROW), (2, {**ROW, "language": "average"})]
    assert list(json.loads(path.read_text().splitlines()[0])) == list(RESULT_KEYS)


def test_study_results_keep_non_ascii_escaped(tmp_path: Path) -> None:
    """results.jsonl has always been written with ``json.dumps`` defaults: the same bytes as before."""
    path = tmp_path / "results.jsonl"
    row = {**ROW, "model": "Café"}
    write_study_results(path, [row])
    assert path.read_bytes() == (json.dumps(row) + "\n").encode()


def test_other_files_round_trip(tmp_path: Path) -> None:
    write_pretrain_curves(tmp_path / "curves.jsonl", [CURVE])
    assert read_pretrain_curves(tmp_path / "curves.jsonl") == [CURVE]
    assert read_pretrain_curves(tmp_path / "none.jsonl") is None
    write_question_scores(tmp_path / "scores.jsonl", [SCORE])
    assert read_question_scores(tmp_path / "scores.jsonl", "") == [SCORE]
    assert "ελ" in (tmp_path / "scores.jsonl").read_text(encoding="utf-8")  # written as UTF-8, not escaped
    write_qa_results(tmp_path / RESULTS_FILE, QA_RESULTS)
    assert read_qa_results(tmp_path / RESULTS_FILE, scored=True) == QA_RESULTS
    write_pretrain_metrics(tmp_path / PRETRAIN_METRICS_FILE, METRICS)
    assert read_pretrain_metrics(tmp_path / PRETRAIN_METRICS_FILE) == METRICS


def test_a_row_of_another_schema_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected"):
        write_study_results(tmp_path / "results.jsonl", [{**ROW, "extra": 1}])
    assert not (tmp_path / "results.jsonl").exists()


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


BAD = [
    ("results row seed", lambda p: read_study_results(_jsonl(p, [{**ROW, "seed": "one"}])),
     "line 1: field 'seed' must be an integer, got 'one'"),
    ("results row missing", lambda p: read_study_results(_jsonl(p, [ROW, {k: v for k, v in ROW.items() if k != "f1"}])),
     "line 2: missing field 'f1'"),
    ("results row twice", lambda p: read_study_results(_jsonl(p, [ROW, ROW])),
     "line 2: a second row for model 'long', eval_set 'xquad', language 'de', seed 1 (first at line 1)"),
    ("curve step", lambda p: read_pretrain_curves(_jsonl(p, [{**CURVE, "step": 1.5}])),
     "line 1: field 'step' must be an integer"),
    ("question f1", lambda p: read_question_scores(_jsonl(p, [{**SCORE, "f1": 101}]), ""),
     "line 1: field 'f1' must be a number from 0 to 100"),
    ("question twice", lambda p: read_question_scores(_jsonl(p, [SCORE, SCORE]), ""),
     "question id 'q1' (ελ) is scored twice"),
    ("qa language scores", lambda p: read_qa_results(_json(p, {**QA_RESULTS, "per_language": {"de": {"f1": 1}}})),
     "missing field 'per_language.de.exact_match'"),
    ("qa average", lambda p: read_qa_results(_json(p, {"average": {"exact_match": 1, "f1": "high"}})),
     "field 'average.f1' must be a number from 0 to 100"),
    ("qa unscored", lambda p: read_qa_results(_json(p, {"seed": 1}), scored=True),
     "missing field 'per_language'"),
    ("qa analysis", lambda p: read_qa_results(_json(p, {"analysis": {"answer_position": []}})),
     "field 'analysis.answer_position' must be an object of buckets"),
    ("qa not object", lambda p: read_qa_results(_json(p, [1])), "expected a JSON object, got list"),
    ("metrics step", lambda p: read_pretrain_metrics(_json(p, {**METRICS, "evals": [{"loss": 1.0}]})),
     "missing field 'evals[0].step'"),
    ("metrics final", lambda p: read_pretrain_metrics(_json(p, {**METRICS, "final": 3})),
     "field 'final' must be an evaluation"),
    ("metrics not json", lambda p: read_pretrain_metrics(p.write_text('{"initial": ') and p),
     "not JSON (Expecting value: line 1, column 13)"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "read", "message"), BAD, ids=[b[0] for b in BAD])
def test_reader_refuses_a_malformed_record_in_one_line(
    tmp_path: Path, case: str, read: Any, message: str
) -> None:
    path = tmp_path / "file"
    with pytest.raises(LongifyError) as err:
        read(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_jsonl_writer_leaves_identical_bytes_untouched(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    assert write_jsonl_atomic(path, [{"a": 1}]) is True
    before = os.stat(path)
    assert write_jsonl_atomic(path, [{"a": 1}]) is False
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert write_jsonl_atomic(path, [{"a": 2}]) is True
    assert path.read_text() == '{"a": 2}\n' and os.listdir(tmp_path) == ["rows.jsonl"]


def test_jsonl_writer_gives_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_jsonl_atomic(tmp_path / "rows.jsonl", [])
    finally:
        os.umask(old)
    assert (tmp_path / "rows.jsonl").stat().st_mode & 0o777 == 0o640


def test_checkpoint_step_comes_from_the_trainer_state_only(tmp_path: Path) -> None:
    """A folder named checkpoint-N without a trainer state has no step (export treats it as a plain model)."""
    ckpt = tmp_path / "checkpoint-7"
    ckpt.mkdir()
    assert checkpoint_step(ckpt) is None and checkpoint_step(None) is None
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    assert checkpoint_step(ckpt) == 6


def test_collector_refuses_a_malformed_results_json_in_one_line(tmp_path: Path) -> None:
    job = Job(id="0123456789abcdef", stage="evaluate", model="long", options={}, seed=1, eval_set="xquad",
              task="xquad")  # fmt: skip
    run = job.output(tmp_path)
    run.mkdir(parents=True)
    _json(run / RESULTS_FILE, {"per_language": QA_RESULTS["per_language"]})
    with pytest.raises(LongifyError, match=r"results\.json: missing field 'average'"):
        result_rows(job, run, tmp_path)
    _json(run / RESULTS_FILE, QA_RESULTS)
    assert [r["language"] for r in result_rows(job, run, tmp_path)] == ["de", "average"]


def test_resumed_metrics_log_refuses_a_malformed_file_in_one_line(tmp_path: Path) -> None:
    _json(tmp_path / PRETRAIN_METRICS_FILE, {**METRICS, "evals": [{"loss": 1.0}]})
    with pytest.raises(LongifyError, match=r"pretrain_metrics\.json: missing field 'evals\[0\]\.step'"):
        MetricsLog(tmp_path, {}, resume_step=4)
    assert MetricsLog(tmp_path, {}).finished_at(4, evaluated=True) is None
