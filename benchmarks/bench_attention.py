"""Fast exact Longformer attention against HF's ``LongformerSelfAttention``, measured in the same run.

Prints, per hidden size: attention layer and whole model, forward and forward+backward (ratios HF / fast);
the cost per token against a RoBERTa of the same width at 512 tokens (SDPA) over the same number of
tokens; achieved GFLOP/s on the exact band FLOPs against this machine's fp32 matmul rate; and the extra
peak memory of each (fresh process: peak RSS (VmHWM, reset just before) minus RSS before the step).

    .venv/bin/python benchmarks/bench_attention.py            # the docs/performance.md figures
    .venv/bin/python benchmarks/bench_attention.py --quick    # smoke run: hidden 256, 1 layer, 1 repeat
    .venv/bin/python benchmarks/bench_attention.py --bf16 --hidden 768   # under bf16 autocast (both sides)
    .venv/bin/python benchmarks/bench_attention.py --base     # 12-layer base size, fp32 and bf16, +- checkpointing

With ``--bf16`` both HF and the fast path run under ``torch.autocast("cpu", dtype=torch.bfloat16)``, and
the model fwd+bwd row also times the fast path in fp32 (same run, interleaved): "fp32 fast / bf16 fast".
On a CPU without native bf16 (AVX2 only: bf16 7-9x slower than fp32) the bf16 cases and the bf16 matmul rate
are skipped with a line, ``--quick``'s too (``--bf16-on-emulated-cpu`` times them anyway); the header names
the CPU (``cpu_kind.py``).

Times are the minimum over repeats, implementations interleaved (robust to other load on the machine).
``--window`` is HF's ``attention_window`` (both sides): 512 means w = 256 keys on each side.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from transformers import LongformerConfig, LongformerModel, RobertaConfig, RobertaModel
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longify.attention import FastLongformerSelfAttention, use_fast_attention
from longify.cpu import cpu_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_kind import FORCE_FLAG, FORCE_HELP, bf16_skipped, header
from passthrough import use_passthrough_attention

VOCAB = 1000  # the embedding matrix is not what is measured; keep it small


@dataclass
class Setup:
    hidden: int
    layers: int
    heads: int
    seq: int
    window: int
    globals: int
    batch: int
    block: int | None
    dropout: float
    bf16: bool = False  # HF and fast under bf16 autocast ("fast_fp32" stays in fp32)
    checkpointing: bool = False  # gradient checkpointing (model scope; train mode, dropout as configured)


def longformer(s: Setup) -> LongformerModel:
    config = LongformerConfig(
        vocab_size=VOCAB,
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=4 * s.hidden,
        attention_window=s.window,
        max_position_embeddings=s.seq + 2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=s.dropout,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    return LongformerModel(config, add_pooling_layer=False).train(s.dropout > 0)


def roberta(s: Setup) -> RobertaModel:
    config = RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=4 * s.hidden,
        max_position_embeddings=514,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=s.dropout,
        pad_token_id=1,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return RobertaModel(config, add_pooling_layer=False).train(s.dropout > 0)


def steps(s: Setup, impl: str, scope: str) -> Callable[[bool], None]:
    """A closure running one forward (backward=False, under no_grad) or forward+backward.

    ``impl``: "hf", "fast", "roberta", "fast_fp32" (the fast path without autocast, also when ``s.bf16``), or
    "floor" (the attention replaced by a pass-through, ``passthrough.py``: what no attention kernel can beat).
    """
    bf16 = s.bf16 and impl != "fast_fp32"
    ids = torch.randint(3, VOCAB, (s.batch, s.seq), generator=torch.Generator().manual_seed(0))
    glob = torch.zeros_like(ids)
    glob[:, : s.globals] = 1
    if impl == "roberta":
        model, kwargs = roberta(s), {"input_ids": ids.view(-1, 512)}
    else:
        model = longformer(s)
        kwargs = {"input_ids": ids, "global_attention_mask": glob}
        if impl in ("fast", "fast_fp32"):
            use_fast_attention(model, block_size=s.block)
        elif impl == "floor":
            use_passthrough_attention(model)
        if s.checkpointing and scope == "model":
            model.train()  # HF checkpoints only in train mode (dropout stays as configured)
            model.gradient_checkpointing_enable()
        if scope == "layer":
            model = model.encoder.layer[0].attention.self
            x = torch.randn(s.batch, s.seq, s.hidden, requires_grad=True)
            mask = torch.zeros(s.batch, s.seq)
            mask[:, : s.globals] = torch.finfo(torch.float32).max
            kwargs = {
                "hidden_states": x,
                "attention_mask": mask,
                "is_index_masked": mask < 0,
                "is_index_global_attn": mask > 0,
                "is_global_attn": s.globals > 0,
            }

    def step(backward: bool) -> None:
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(backward), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = model(**kwargs)[0]
            if backward:
                out.float().mean().backward()

    return step


def exact_flops(s: Setup, impl: str, scope: str) -> float:
    """Forward FLOPs of the exact computation (matmuls only): band pairs, not HF's overlapping chunks."""
    n, e, g, w = s.seq * s.batch, s.hidden, s.globals * s.batch, s.window // 2
    if impl == "roberta":
        pairs = n * 512
    else:
        band = s.batch * (s.seq * (2 * w + 1) - w * (w + 1))
        pairs = band + (n - g) * s.globals + g * s.seq
    attention = 2 * 2 * pairs * e + 2 * n * e * 3 * e + 2 * g * e * e
    if scope == "layer":
        return attention
    return s.layers * (attention + 2 * n * e * e + 2 * 2 * n * e * 4 * e)


def matmul_rate(dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of one 4096x768 @ 768x3072 matmul in ``dtype`` (min of 10 after 3 warm-ups)."""
    a, b = torch.randn(4096, 768, dtype=dtype), torch.randn(768, 3072, dtype=dtype)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(10))
    return 2 * 4096 * 768 * 3072 / best / 1e9


CLOCK: Callable[[], float] = time.perf_counter


def _timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def time_all(s: Setup, impls: list[str], scope: str, backward: bool, repeats: int) -> dict[str, float]:
    runs = {impl: steps(s, impl, scope) for impl in impls}
    for run in runs.values():
        run(backward)  # warm-up
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for impl, run in runs.items():
            best[impl] = min(best[impl], _timed(lambda run=run: run(backward)))
    return best


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(spec: str) -> None:
    """Fresh-process memory probe: prints the extra peak RSS (MiB) of one step over the RSS before it."""
    cfg = json.loads(spec)
    s = Setup(**cfg["setup"])
    step = steps(s, cfg["impl"], cfg["scope"])
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM), so the peak below is the step's
    before = _status_mib("VmRSS")
    step(cfg["backward"])
    peak = _status_mib("VmHWM")
    print(json.dumps({"impl": cfg["impl"], "extra_mib": peak - before}))


def extra_memory(s: Setup, impl: str, scope: str, backward: bool) -> float:
    spec = json.dumps({"setup": asdict(s), "impl": impl, "scope": scope, "backward": backward})
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def rates(bf16: bool = True) -> dict[str, float]:
    """This machine's matmul rate now, fp32 and bf16 (GFLOP/s); bf16 NaN (not measured) unless ``bf16``: on a
    CPU without native bf16 its 13 matmuls alone took minutes (about 1 GFLOP/s on a loaded AVX2 machine)."""
    return {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16) if bf16 else math.nan}


def gflops(rate: float) -> str:
    return "not measured" if math.isnan(rate) else f"{rate:.0f} GFLOP/s"


def best_rates(peak: dict[str, float]) -> dict[str, float]:
    """The best of ``peak`` and a new measurement: other jobs may share the machine."""
    again = rates(bf16=not math.isnan(peak["bf16"]))
    return {k: max(v, again[k]) for k, v in peak.items()}


def report(s: Setup, repeats: int, memory: bool, peak: dict[str, float]) -> None:
    precision = "bf16 autocast (HF and fast)" if s.bf16 else "fp32"
    print(
        f"\n## hidden {s.hidden}, {s.layers} layers, {s.heads} heads, n = {s.seq}, attention_window {s.window}, "
        f"{s.globals} global, batch {s.batch}, attention dropout {s.dropout}, {precision}"
    )
    mem_head = f"{'HF MiB':>9}{'fast MiB':>10}{'mem f/HF':>10}" if memory else ""
    print(f"{'what':<22}{'HF s':>9}{'fast s':>9}{'HF/fast':>9}{mem_head}")
    results: dict[tuple[str, bool], dict[str, float]] = {}
    for scope in ("layer", "model"):
        for backward in (False, True):
            impls = ["hf", "fast"]
            if scope == "model" and backward:
                impls += ["roberta", "floor"] + (["fast_fp32"] if s.bf16 else [])
            t = time_all(s, impls, scope, backward, repeats)
            results[(scope, backward)] = t
            mem = ""
            if memory:
                m_hf, m_fast = (extra_memory(s, i, scope, backward) for i in ("hf", "fast"))
                mem = f"{m_hf:>9.0f}{m_fast:>10.0f}{m_fast / max(m_hf, 1e-9):>10.2f}"
            name = f"{scope} {'fwd+bwd' if backward else 'fwd'}"
            print(f"{name:<22}{t['hf']:>9.3f}{t['fast']:>9.3f}{t['hf'] / t['fast']:>9.2f}{mem}", flush=True)
    t = results[("model", True)]
    if s.bf16:
        print(
            f"fast path fp32 (no autocast), model fwd+bwd: {t['fast_fp32']:.3f} s; "
            f"fp32 fast / bf16 fast {t['fast_fp32'] / t['fast']:.2f}x"
        )
    print(
        f"cost per token vs RoBERTa-512 (SDPA, batch {s.seq * s.batch // 512} x 512), fwd+bwd: "
        f"RoBERTa {t['roberta']:.3f} s, fast {t['fast'] / t['roberta']:.2f}x, HF {t['hf'] / t['roberta']:.2f}x"
    )
    print(floor_line(t, s.bf16))
    peak = best_rates(peak)
    key = "bf16" if s.bf16 else "fp32"
    print(
        f"achieved GFLOP/s on exact FLOPs (fwd+bwd = 3 x fwd), matmul rate {peak[key]:.0f} GFLOP/s {key} "
        f"({peak['fp32']:.0f} fp32, bf16 {gflops(peak['bf16'])}):"
    )
    for scope in ("layer", "model"):
        t = results[(scope, True)]
        rate = {i: 3 * exact_flops(s, i, scope) / t[i] / 1e9 for i in t if i != "floor"}
        print("  " + scope + ": " + ", ".join(f"{i} {r:.0f} ({r / peak[key]:.0%})" for i, r in rate.items()))


def floor_line(t: dict[str, float], bf16: bool) -> str:
    """The bound the pass-through gives: no attention kernel can beat HF by more than HF / floor."""
    line = (
        f"floor (attention a pass-through), model fwd+bwd: {t['floor']:.3f} s; the most any attention can "
        f"give: HF / floor {t['hf'] / t['floor']:.2f}x (fast: {t['hf'] / t['fast']:.2f}x, its attention "
        f"{t['fast'] - t['floor']:.3f} s, HF's {t['hf'] - t['floor']:.3f} s)"
    )
    if bf16:
        line += f"; fp32 fast / bf16 floor {t['fast_fp32'] / t['floor']:.2f}x"
    return line


def base(repeats: int, memory: bool, peak: dict[str, float], quick: bool, bf16: bool = True) -> None:
    """The base size (roberta-base: 12 layers, hidden 768, 12 heads, 3072; 4096 tokens, batch 1), model
    fwd+bwd, fast vs HF, fp32 and (``bf16``) bf16 autocast, without and with gradient checkpointing."""
    shape = (256, 2, 4, 1024) if quick else (768, 12, 12, 4096)
    hidden, layers, heads, seq = shape
    print(
        f"\n## base size: {layers} layers, hidden {hidden}, {heads} heads, intermediate {4 * hidden}, n = {seq}, "
        "attention_window 512, 2 global, batch 1; model fwd+bwd"
    )
    mem_head = f"{'HF MiB':>9}{'fast MiB':>10}{'mem f/HF':>10}" if memory else ""
    print(
        f"{'precision':<10}{'checkpt':>8}{'HF s':>9}{'fast s':>9}{'HF/fast':>9}{'floor s':>9}{'HF/floor':>9}"
        f"{'HF tok/s':>10}{'fast tok/s':>11}{mem_head}"
    )
    for low in (False, True) if bf16 else (False,):
        for checkpointing in (False, True):
            s = Setup(hidden, layers, heads, seq, 512, 2, 1, None, 0.0, low, checkpointing)
            t = time_all(s, ["hf", "fast", "floor"], "model", True, repeats)
            mem = ""
            if memory:
                m_hf, m_fast = (extra_memory(s, i, "model", True) for i in ("hf", "fast"))
                mem = f"{m_hf:>9.0f}{m_fast:>10.0f}{m_fast / max(m_hf, 1e-9):>10.2f}"
            print(
                f"{'bf16' if low else 'fp32':<10}{'yes' if checkpointing else 'no':>8}{t['hf']:>9.3f}"
                f"{t['fast']:>9.3f}{t['hf'] / t['fast']:>9.2f}{t['floor']:>9.3f}{t['hf'] / t['floor']:>9.2f}"
                f"{seq / t['hf']:>10.0f}{seq / t['fast']:>11.0f}{mem}",
                flush=True,
            )
    peak = best_rates(peak)
    print(f"matmul rate: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {gflops(peak['bf16'])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 768])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=None, help="default: hidden / 64 (12 at 768, 4 at 256)")
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--window", type=int, default=512, help="HF attention_window (both sides)")
    p.add_argument("--globals", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--block", type=int, default=None, help="query block size (default: the module's)")
    p.add_argument("--dropout", type=float, default=0.0, help="attention dropout, train mode when > 0")
    p.add_argument("--bf16", action="store_true", help="HF and fast under bf16 autocast (+ fast fp32 row)")
    p.add_argument(
        "--base",
        action="store_true",
        help="only the 12-layer base size (fp32 and bf16, +- gradient checkpointing; minutes)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    p.add_argument(
        "--quick", action="store_true", help="hidden 256, 1 layer, 1 repeat, no memory, fp32 then bf16"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu = process CPU time: with --threads 1, robust to other jobs sharing the machine",
    )
    p.add_argument(FORCE_FLAG, action="store_true", help=FORCE_HELP)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return child(args.child)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    precisions = [args.bf16]
    if args.quick:
        args.hidden, args.layers, args.repeats, args.no_memory = [256], 1, 1, True
        precisions = [False, True]
    wants_bf16 = args.bf16 or args.base or args.quick
    skipped = bf16_skipped(cpu_info(), forced=args.bf16_on_emulated_cpu) if wants_bf16 else None
    if skipped:
        precisions = [False]  # --quick: its fp32 case alone
    peak = rates(bf16=not skipped)
    print(header())
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock; "
        f"load average {os.getloadavg()[0]:.1f}; matmul fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {gflops(peak['bf16'])}"
    )
    if skipped:
        print(skipped)
        if args.bf16 and not args.base:
            return  # --bf16 asked for the bf16 case alone
    if args.base:
        base(args.repeats, not args.no_memory, peak, args.quick, bf16=not skipped)
    else:
        for bf16 in precisions:
            for hidden in args.hidden:
                heads = args.heads or max(1, hidden // 64)
                s = Setup(
                    hidden,
                    args.layers,
                    heads,
                    args.seq,
                    args.window,
                    args.globals,
                    args.batch,
                    args.block,
                    args.dropout,
                    bf16,
                )
                report(s, args.repeats, not args.no_memory, peak)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    assert issubclass(FastLongformerSelfAttention, LongformerSelfAttention)
    main()
