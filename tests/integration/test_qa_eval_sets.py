"""An evaluation's files are one set: ``qa evaluate`` refuses a rerun with other arguments into the folder of
an evaluation (``--overwrite_output_dir`` replaces it), and a SIGKILL at any moment of the swap leaves the old
set or the new one, never a mix; the next writer cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import longify
from helpers import eval_argv
from longify.cli import main

EVAL_NAMES = ("results.json", "predictions.json", "nbest_predictions.json", "question_scores.jsonl")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(longify.__file__).parents[1])}


def eval_set(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in EVAL_NAMES if (folder / name).is_file()}


# --- 2. an evaluation is not replaced by another one; its files are replaced as a set --------------------------


def test_evaluate_refuses_a_rerun_with_other_arguments(qa, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    base = ["qa", "evaluate", *eval_argv(qa["trained"], qa["dev"], out)]
    assert main([*base, "--max_eval_samples", "3"]) == 0
    first = eval_set(out)
    assert json.loads(first["results.json"])["defining_args"]["--max_eval_samples"] == 3
    capsys.readouterr()
    assert main([*base, "--max_eval_samples", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max_eval_samples 4 (the run was made with 3)" in err
    assert "--overwrite_output_dir" in err and eval_set(out) == first
    assert main([*base, "--max_eval_samples", "3", "--doc_stride", "8"]) == 2  # the windows define it too
    assert "--doc_stride 8 (the run was made with 16)" in capsys.readouterr().err
    # scoring a predictions file into the folder of a model's evaluation is another evaluation
    scoring = ["qa", "evaluate", "--predictions", str(out / "predictions.json"), "--dataset", str(qa["dev"]),
               "--output_dir", str(out)]  # fmt: skip
    assert main(scoring) == 2 and eval_set(out) == first
    # the same arguments again: evaluated again (same predictions), the set replaced
    assert main([*base, "--max_eval_samples", "3"]) == 0
    again = eval_set(out)
    assert again["predictions.json"] == first["predictions.json"]
    assert main([*base, "--max_eval_samples", "4", "--overwrite_output_dir"]) == 0
    assert json.loads((out / "results.json").read_text())["total"] == 4
    assert len(json.loads((out / "predictions.json").read_text())) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


KILLED_EVALUATION = """
import os, sys, time
from pathlib import Path
out, signal_file = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
real = os.replace

def stalling(src, dst, *args, **kwargs):  # the moment results.json is put in place: the run is killed
    if Path(dst).resolve() == out / "results.json":
        signal_file.touch()
        time.sleep(300)
    return real(src, dst, *args, **kwargs)

os.replace = stalling
from longify.cli import main
sys.exit(main(sys.argv[3:]))
"""


def consistent(folder: Path) -> bool:
    """The files of one evaluation: as many predictions, n-best lists and question scores as it scored."""
    results = json.loads((folder / "results.json").read_text())
    lines = (folder / "question_scores.jsonl").read_text().splitlines()
    counts = {
        len(json.loads((folder / n).read_text())) for n in ("predictions.json", "nbest_predictions.json")
    }
    return counts == {results["total"]} and len(lines) == results["total"]


def test_a_killed_evaluation_leaves_the_old_set_or_the_new_one(qa, tmp_path) -> None:
    out, signal_file = tmp_path / "eval", tmp_path / "writing"
    base = ["qa", "evaluate", *eval_argv(qa["trained"], qa["dev"], out)]
    assert main([*base, "--max_eval_samples", "3"]) == 0
    old = eval_set(out)
    cmd = [sys.executable, "-c", KILLED_EVALUATION, str(out), str(signal_file), *base,
           "--max_eval_samples", "5", "--overwrite_output_dir"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the evaluation never wrote"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # whatever results.json is there belongs with the files beside it
    assert not (out / "results.json").exists() or consistent(out)
    # the next command into the folder puts the old set back whole (here it is then refused: other arguments)
    assert main([*base, "--max_eval_samples", "4"]) == 2
    assert eval_set(out) == old and not [p for p in out.iterdir() if p.name.startswith(".")]


SWAP = """
import os, signal, sys
from pathlib import Path
from longify.qa.evalset import eval_files_into
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
real, count = os.replace, [0]

def killing(src, dst, *args, **kwargs):
    count[0] += 1
    if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)

with eval_files_into(out) as tmp:
    for name in ("results.json", "predictions.json", "nbest_predictions.json", "question_scores.jsonl"):
        (tmp / name).write_text("new " + name)
    os.replace = killing  # count the renames of the swap only
"""


def test_a_swap_killed_at_any_rename_is_undone_or_completed(tmp_path) -> None:
    """SIGKILL at each rename of the set's swap (old set: 3 files, new set: 4): what is left is the old set or
    the new one (results.json never sits beside another set's files), and the next writer cleans up."""
    from longify.qa.evalset import recover_eval_sets

    old = {n: f"old {n}".encode() for n in EVAL_NAMES[:3]}
    new = {n: f"new {n}".encode() for n in EVAL_NAMES}
    outcomes = []
    for kill_at in range(1, 10):  # 1 record + 3 parked + 4 moved in; 9: not killed
        out = tmp_path / f"k{kill_at}"
        out.mkdir()
        for name, text in old.items():
            (out / name).write_bytes(text)
        (out / "model.safetensors").write_text("not ours")
        res = subprocess.run([sys.executable, "-c", SWAP, str(out), str(kill_at)], env=ENV, check=False)
        assert res.returncode == (-signal.SIGKILL if kill_at < 9 else 0)
        if (out / "results.json").exists():
            assert eval_set(out) in (old, new), kill_at
        recover_eval_sets(out)
        now = eval_set(out)
        assert now in (old, new), kill_at
        assert sorted(p.name for p in out.iterdir() if p.name not in EVAL_NAMES) == ["model.safetensors"]
        outcomes.append("new" if now == new else "old")
    assert outcomes[0] == "old" and outcomes[-1] == "new"
