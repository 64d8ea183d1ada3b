"""Features per second of ``qa evaluate``'s forward pass at 4096 tokens: fast vs HF attention, fp32 and bf16.

What is timed is ``longify.qa.pipeline.window_logits``, the function ``qa evaluate`` (and the evaluation in
``qa train``) runs over the windows: length-sorted batches, the collator's padding to a multiple of the
attention window, ``torch.inference_mode()``, CPU bf16 autocast for ``--bf16``, logits back to numpy. The model
is a randomly initialised ``LongformerForQuestionAnswering`` of the given size (default roberta-base's shape:
12 layers, hidden 768, 12 heads, 3072), each window full (4096 tokens) with a 30-token question (global
attention on the question and CLS, as ``build_features`` marks it). ``floor`` is the same model with the
attention a pass-through (``passthrough.py``): HF / floor is the most any attention could gain over HF here.

Every (batch size, precision, attention) case runs once per repeat, all interleaved in one process; the
figure is the minimum over repeats (robust to other load on the machine). The fp32 and bf16 matmul rate
(4096x768 @ 768x3072; 256x64 @ 64x256 with ``--quick``) is measured at the start of each repeat, on the same clock. ``--threads 1 --clock cpu``
times process CPU time on one thread, which other jobs on a shared machine disturb much less than the wall
clock.

The header, the table and the JSON (``cpu``) name the CPU. On a CPU without native bf16 (AVX2 only: bf16 7-9x
slower than fp32) the bf16 cases and their matmul rate are left out, with a line, except at ``--quick``'s tiny
sizes; ``--bf16-on-emulated-cpu`` times them anyway.

    .venv/bin/python benchmarks/bench_qa_eval.py --threads 1 --clock cpu   # docs/performance.md (long)
    .venv/bin/python benchmarks/bench_qa_eval.py                 # wall clock, torch's threads
    .venv/bin/python benchmarks/bench_qa_eval.py --quick         # smoke run (seconds)
    .venv/bin/python benchmarks/bench_qa_eval.py --batches 8 --precisions fp32 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch
from transformers import LongformerConfig, LongformerForQuestionAnswering

from longify.attention import use_hf_attention
from longify.cpu import cpu_info
from longify.qa.features import QACollator
from longify.qa.pipeline import window_logits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_kind import FORCE_FLAG, FORCE_HELP, bf16_skipped, header
from passthrough import use_passthrough_attention, use_real_fast

VOCAB = 1000  # the embedding matrix is not what is measured
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
# "floor": the attention a pass-through (passthrough.py): HF / floor bounds what any attention can reach
IMPLS = {"fast": use_real_fast, "hf": use_hf_attention, "floor": use_passthrough_attention}


def qa_model(a: argparse.Namespace) -> LongformerForQuestionAnswering:
    config = LongformerConfig(
        vocab_size=VOCAB,
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        intermediate_size=a.intermediate,
        attention_window=a.window,
        max_position_embeddings=a.seq + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    return LongformerForQuestionAnswering(config).eval()


def windows(count: int, seq: int, question: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` full windows: <s> question </s></s> context </s>, global attention on <s> + question."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(3, VOCAB, size=seq).astype(np.int32)
        ids[0] = 0
        ids[question + 1 : question + 3] = 2
        ids[-1] = 2
        glob = np.zeros(seq, dtype=np.int32)
        glob[: question + 1] = 1
        out.append(
            {"input_ids": ids, "attention_mask": np.ones(seq, dtype=np.int32), "global_attention_mask": glob}
        )
    return out


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


MATMUL = (4096, 768, 3072)  # the base model's feed-forward matmul at 4096 tokens
QUICK_MATMUL = (256, 64, 256)  # --quick: bf16 without native support runs about 1 GFLOP/s on one core


def matmul_rate(dtype: torch.dtype, clock: str = "wall", shape: tuple[int, int, int] = MATMUL) -> float:
    """GFLOP/s of one ``m x k @ k x n`` matmul (``shape``) in ``dtype`` (min of 10 after 3 warm-ups)."""
    now = CLOCKS[clock]
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        start = now()
        a @ b
        best = min(best, now() - start)
    return 2 * m * k * n / best / 1e9


def run(a: argparse.Namespace) -> dict[str, Any]:
    if a.threads:
        torch.set_num_threads(a.threads)
    model = qa_model(a)
    collator = QACollator(pad_token_id=1, pad_to_multiple_of=a.window)
    feats = {b: windows(b, a.seq, a.global_tokens) for b in a.batches}
    cases = [(b, p, i) for b in a.batches for p in a.precisions for i in a.impls]
    best = dict.fromkeys(cases, float("inf"))
    # bf16's rate only where bf16 is timed: on a CPU without native bf16 it alone can take minutes
    rates: dict[str, list[float]] = {p: [] for p in ("fp32", "bf16") if p == "fp32" or p in a.precisions}
    loads: list[float] = []

    def timed(batch: int, prec: str, impl: str, fs: list[dict[str, Any]]) -> float:
        IMPLS[impl](model)
        now = CLOCKS[a.clock]
        start = now()
        window_logits(model, fs, collator, batch, autocast_dtype=DTYPES[prec])
        return now() - start

    warm = windows(1, min(a.seq, 2 * a.window), a.global_tokens, seed=1)
    for prec in a.precisions:  # first calls allocate and pick kernels
        for impl in a.impls:
            timed(1, prec, impl, warm)
    for r in range(a.repeats):
        loads.append(os.getloadavg()[0])
        for prec, values in rates.items():
            values.append(matmul_rate(DTYPES[prec] or torch.float32, a.clock, a.matmul))
        for case in cases:
            seconds = timed(*case, feats[case[0]])
            best[case] = min(best[case], seconds)
            if a.verbose:
                print(f"repeat {r + 1}: batch {case[0]} {case[1]} {case[2]}: {seconds:.2f} s", flush=True)
    results = []
    for batch in a.batches:
        for prec in a.precisions:
            row: dict[str, Any] = {"batch": batch, "precision": prec}
            for impl in a.impls:
                row[f"{impl}_s"] = round(best[(batch, prec, impl)], 4)
                row[f"{impl}_features_per_s"] = round(batch / best[(batch, prec, impl)], 4)
            if {"fast", "hf"} <= set(a.impls):
                row["fast_over_hf"] = round(best[(batch, prec, "hf")] / best[(batch, prec, "fast")], 3)
            if {"floor", "hf"} <= set(a.impls):
                row["floor_over_hf"] = round(best[(batch, prec, "hf")] / best[(batch, prec, "floor")], 3)
            if prec == "bf16" and "fp32" in a.precisions:
                for impl in a.impls:
                    fp32 = best[(batch, "fp32", impl)]
                    row[f"{impl}_bf16_over_fp32"] = round(fp32 / best[(batch, prec, impl)], 3)
            results.append(row)
    return {
        "setup": {
            "seq": a.seq,
            "layers": a.layers,
            "hidden": a.hidden,
            "heads": a.heads,
            "intermediate": a.intermediate,
            "window": a.window,
            "global_tokens": a.global_tokens + 1,
            "repeats": a.repeats,
            "threads": torch.get_num_threads(),
            "clock": a.clock,
            "matmul": "x".join(map(str, a.matmul)),
            "torch": torch.__version__,
        },
        "cpu": cpu_info().record(),
        "matmul_gflops": {p: [round(min(v), 1), round(max(v), 1)] for p, v in rates.items()},
        "load_average": [round(min(loads), 2), round(max(loads), 2)],
        "results": results,
    }


def table(out: dict[str, Any]) -> str:
    s, m = out["setup"], out["matmul_gflops"]
    lines = [
        f"CPU {out['cpu']['capability']}, native bf16 {'yes' if out['cpu']['native_bf16'] else 'no'}",
        f"{s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, {s['intermediate']}, {s['seq']} tokens, "
        f"window {s['window']}, {s['global_tokens']} global tokens, {s['threads']} threads, {s['clock']} clock, min of "
        f"{s['repeats']} interleaved repeats; load average {out['load_average'][0]}-{out['load_average'][1]}; "
        f"matmul fp32 {m['fp32'][0]:.0f}-{m['fp32'][1]:.0f} GFLOP/s, bf16 "
        + (f"{m['bf16'][0]:.0f}-{m['bf16'][1]:.0f} GFLOP/s" if "bf16" in m else "not measured"),
        "",
        "| batch | precision | HF s | fast s | HF features/s | fast features/s | fast / HF | floor s | HF / floor "
        "| bf16 / fp32 (fast, HF) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["results"]:
        speedup = (
            f"{r['fast_bf16_over_fp32']:.2f}, {r['hf_bf16_over_fp32']:.2f}"
            if "fast_bf16_over_fp32" in r and "hf_bf16_over_fp32" in r
            else ""
        )
        lines.append(
            f"| {r['batch']} | {r['precision']} | {r.get('hf_s', float('nan')):.2f} | "
            f"{r.get('fast_s', float('nan')):.2f} | {r.get('hf_features_per_s', float('nan')):.3f} | "
            f"{r.get('fast_features_per_s', float('nan')):.3f} | {r.get('fast_over_hf', float('nan')):.2f} | "
            f"{r.get('floor_s', float('nan')):.2f} | {r.get('floor_over_hf', float('nan')):.2f} | {speedup} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 repeat (seconds)")
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--intermediate", type=int, default=3072)
    p.add_argument("--window", type=int, default=512, help="attention_window (w = window / 2 each side)")
    p.add_argument("--global-tokens", type=int, default=29, help="question tokens (+ CLS: 30 global)")
    p.add_argument("--batches", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 8])
    p.add_argument("--precisions", type=lambda v: v.split(","), default=["fp32", "bf16"])
    p.add_argument("--impls", type=lambda v: v.split(","), default=["fast", "hf", "floor"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: process CPU time (use 1 thread)"
    )
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--verbose", action="store_true", help="print every timing as it is taken")
    p.add_argument(FORCE_FLAG, action="store_true", help=FORCE_HELP)
    a = p.parse_args(argv)
    a.matmul = QUICK_MATMUL if a.quick else MATMUL
    if a.quick:
        a.seq, a.layers, a.hidden, a.heads, a.intermediate = 256, 2, 64, 4, 128
        a.window, a.global_tokens, a.batches, a.repeats = 32, 5, [1, 2], 1
    for name, chosen, known in (("precisions", a.precisions, DTYPES), ("impls", a.impls, IMPLS)):
        if not chosen or set(chosen) - set(known):
            p.error(f"--{name}: expected a comma-separated subset of {','.join(known)}")
    a.skipped = (
        bf16_skipped(cpu_info(), small=a.quick, forced=a.bf16_on_emulated_cpu)
        if "bf16" in a.precisions
        else None
    )
    if a.skipped:
        a.precisions = [p for p in a.precisions if p != "bf16"]
        if not a.precisions:
            p.error(f"--precisions: {a.skipped.removeprefix('# ')}")
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run, print the table and the JSON object (last line), write ``--json``; return the results."""
    args = parse(argv)
    print(header())
    if args.skipped:
        print(args.skipped)
    out = run(args)
    print(table(out))
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
