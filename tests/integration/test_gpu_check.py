"""The prepared GPU check runs end to end (its CPU smoke mode), so it is ready when a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO


def test_gpu_check_smoke_prints_one_json_object() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_check.py"),
        "--quick",
        "--device",
        "cpu",
        "--steps",
        "4",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(res.stdout)  # stdout holds the JSON object alone
    assert result["ok"] and set(result["exactness"]) == {"fp32", "bf16"}
    assert result["exactness"]["fp32"]["fast_vs_fp32"] < 1e-4
    assert result["pretraining_fp16"]["steps"] == 4 and result["pretraining_fp16"]["finite"]
    assert result["speed"]["hf_s"] > 0 and result["speed"]["fast_s"] > 0
    targets = {(r["target"], r["length"]) for r in result["targets"]["rows"]}
    assert {("short", 512), ("longformer", 2048), ("full", 2048), ("bigbird", 2048)} <= targets
