"""The prepared GPU check (issue: performance round 2): one command, one JSON object on stdout.

    bash benchmarks/gpu_check.sh            # on a GPU machine: full sizes, under 5 minutes on one GPU
    python benchmarks/gpu_check.py --quick --device cpu   # a smoke run anywhere (what the test suite runs)

1. Exactness of the fast attention against HF's LongformerSelfAttention on the device: fp32, bf16 autocast and
   fp16 autocast; outputs and every parameter's gradient; rows with padding and global tokens. Under autocast
   both paths round differently, so each is compared with an fp32 reference of the same weights: the fast
   path passes when its error is at most 2x HF's own error plus 1e-3 (``ok``).
2. Speed and memory: one fwd+bwd of a base-size model (12 layers, hidden 768, 12 heads, 4096 tokens, window
   512, 2 global tokens) under bf16 autocast, fast vs HF, min of 3 after a warm-up, peak memory of each.
3. 50 steps of tiny long-MLM pretraining with ``--fp16``: the loss stays finite.
4. The long targets' cost (``bench_targets.py``): fwd+bwd time and extra peak memory of longformer, full and
   bigbird at 512-8192 tokens, base size, fp32 and bf16 autocast, against the short model of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LongformerConfig, LongformerModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from longify.attention import use_fast_attention
from longify.cpu import cpu_info

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def config(layers: int, hidden: int, heads: int, window: int, positions: int) -> LongformerConfig:
    return LongformerConfig(
        vocab_size=1000,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        attention_window=window,
        max_position_embeddings=positions + 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=1,
    )


def inputs(rows: int, n: int, pad: int, globals_: int, device: str) -> dict[str, torch.Tensor]:
    """Random ids; the last row ends in ``pad`` padding tokens; the first ``globals_`` tokens are global."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (rows, n), generator=g)
    mask = torch.ones(rows, n, dtype=torch.long)
    if pad:
        ids[-1, -pad:], mask[-1, -pad:] = 1, 0
    glob = torch.zeros(rows, n, dtype=torch.long)
    glob[:, :globals_] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "global_attention_mask": glob.to(device),
    }


def run(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype | None, device: str
) -> Any:
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    out.float()[real].pow(2).mean().backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach().float()[real], grads


def max_diff(a: Any, b: Any) -> float:
    (oa, ga), (ob, gb) = a, b
    worst = (oa - ob).abs().max().item()
    for name, grad in ga.items():
        worst = max(worst, (grad - gb[name]).abs().max().item())
    return worst


def exactness(device: str, quick: bool) -> dict[str, Any]:
    n, window = (96, 16) if quick else (1024, 128)
    cfg = config(layers=2, hidden=64 if quick else 256, heads=4, window=window, positions=n)
    torch.manual_seed(0)
    hf = LongformerModel(cfg).to(device).train()
    fast = use_fast_attention(copy.deepcopy(hf)).train()
    batch = inputs(rows=2, n=n, pad=n // 3, globals_=3, device=device)
    reference = run(hf, batch, None, device)  # fp32 HF: the reference of every comparison
    out: dict[str, Any] = {}
    for name, dtype in DTYPES.items():
        if dtype is torch.float16 and device == "cpu":
            continue  # fp16 autocast is a GPU mode
        err_fast = max_diff(run(fast, batch, dtype, device), reference)
        err_hf = max_diff(run(hf, batch, dtype, device), reference) if dtype is not None else 0.0
        limit = 1e-4 if dtype is None else 2 * err_hf + 1e-3
        out[name] = {"fast_vs_fp32": err_fast, "hf_vs_fp32": err_hf, "limit": limit, "ok": err_fast <= limit}
    return out


def timed(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], device: str, repeats: int
) -> tuple[float, float | None]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    run(model, batch, torch.bfloat16, device)  # warm-up
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(model, batch, torch.bfloat16, device)
        sync()
        best = min(best, time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return best, peak


def speed(device: str, quick: bool) -> dict[str, Any]:
    layers, hidden, heads, n, window = (2, 64, 4, 256, 32) if quick else (12, 768, 12, 4096, 512)
    torch.manual_seed(0)
    hf = LongformerModel(config(layers, hidden, heads, window, n)).to(device).train()
    batch = inputs(rows=1, n=n, pad=0, globals_=2, device=device)
    hf_s, hf_mem = timed(hf, batch, device, repeats=1 if quick else 3)
    fast = use_fast_attention(hf)
    fast_s, fast_mem = timed(fast, batch, device, repeats=1 if quick else 3)
    return {
        "shape": {"layers": layers, "hidden": hidden, "tokens": n, "window": window, "autocast": "bf16"},
        "hf_s": hf_s,
        "fast_s": fast_s,
        "speedup": hf_s / fast_s,
        "hf_peak_gib": hf_mem,
        "fast_peak_gib": fast_mem,
    }


def pretraining(steps: int) -> dict[str, Any]:
    from longify.demo.corpus import wikitext
    from longify.mlm.args import parse_pretrain_args
    from longify.mlm.train import pretrain
    from longify.tiny import save_tiny

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = save_tiny("roberta", root / "src", max_len=64)
        (root / "wiki.train.raw").write_text(wikitext(60, seed=1), encoding="utf-8")
        (root / "wiki.valid.raw").write_text(wikitext(6, seed=2), encoding="utf-8")
        argv = [
            "--model_name_or_path", str(src), "--output_dir", str(root / "run"), "--max_pos", "256",
            "--attention_window", "32", "--train_file_path", str(root / "wiki.train.raw"),
            "--val_file_path", str(root / "wiki.valid.raw"), "--do_train", "--do_eval", "--max_steps", str(steps),
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--fp16", "--report_to", "none",
            "--logging_steps", "10", "--save_steps", str(steps), "--max_eval_blocks", "4",
            "--data_cache_dir", str(root / "cache"), "--disable_tqdm", "true",
        ]  # fmt: skip
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log dicts: stdout is the JSON alone
            record = pretrain(parse_pretrain_args(argv))
    losses = [e["loss"] for e in record.get("evals", [])] + [record["final"]["loss"]]
    return {
        "steps": record.get("steps"),
        "train_loss": record.get("train_loss"),
        "eval_loss": record["final"]["loss"],
        "finite": all(math.isfinite(v) for v in [*losses, record.get("train_loss") or 0.0]),
    }


def targets_cost(device: str, quick: bool) -> dict[str, Any]:
    """``bench_targets.py``'s table on this device: fwd+bwd time and extra peak memory of each long target at
    512-8192 tokens (base size; quick: tiny, to 2048), against the short model of the same run; bf16 on GPUs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_targets

    size = bench_targets.QUICK if quick else bench_targets.BASE
    lengths = [512, 1024, 2048] if quick else [512, 1024, 2048, 4096, 8192]
    dtypes = ["fp32", "bf16"] if device.startswith("cuda") else ["fp32"]
    with contextlib.redirect_stdout(sys.stderr), bench_targets.quiet_hf():  # stdout is the JSON alone
        rows = bench_targets.run(size, lengths, dtypes, lambda n: 1 if quick else 3, device)
    return {"size": dataclasses.asdict(size), "rows": [dataclasses.asdict(r) for r in rows]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run on any machine")
    p.add_argument("--steps", type=int, default=50, help="tiny pretraining steps with --fp16")
    ns = p.parse_args()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if ns.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cpu": cpu_info().record(),
        "quick": ns.quick,
    }
    t0 = time.perf_counter()
    result["exactness"] = exactness(ns.device, ns.quick)
    result["speed"] = speed(ns.device, ns.quick)
    result["pretraining_fp16"] = pretraining(ns.steps)
    result["targets"] = targets_cost(ns.device, ns.quick)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["ok"] = all(v["ok"] for v in result["exactness"].values()) and result["pretraining_fp16"]["finite"]
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
