"""What each long target costs to train, against the short model measured in the same run.

For each target (``longformer`` with longify's fast exact attention, window 512; ``full``: RoBERTa with its
position table extended, SDPA; ``bigbird``: block-sparse, block 64, 3 random blocks) at 512, 1024, 2048, 4096 and
8192 tokens: forward + backward time of the bare encoder (one sequence; loss = mean square of the last hidden
states) and the extra peak memory of that step (peak RSS, ``VmHWM`` reset just before, minus RSS before). The
anchor is the short model (RoBERTa, 512 positions, SDPA) at 512 tokens: each row prints its cost per token
against the anchor's ("x short/token": 1.0 = as cheap per token as the short model; full attention grows
with the length, the sparse ones stay near flat).

    .venv/bin/python benchmarks/bench_targets.py            # base size (12 layers, hidden 768), fp32 (+ bf16)
    .venv/bin/python benchmarks/bench_targets.py --quick    # smoke run: 2 layers, hidden 64, up to 2048

bf16 (autocast) runs only where the CPU has native bf16 (see cpu_kind.py; ``--bf16-on-emulated-cpu`` forces
it). BigBird at 512 tokens computes full attention (HF's rule: block-sparse needs more than (5 + 2r) blocks),
and the row says so. Times are the minimum of 2 steps after a warm-up. Writes ``--json`` and a PNG of the cost per token
against the length (``--plot``). From 4096 tokens on, a row is one step without a warm-up (at base size a
step takes minutes on 2 cores), so it may read slightly high.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BigBirdConfig,
    BigBirdModel,
    LongformerConfig,
    LongformerModel,
    PreTrainedModel,
    RobertaConfig,
    RobertaModel,
)

from longify.attention import set_attention
from longify.cpu import cpu_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_kind import FORCE_FLAG, FORCE_HELP, bf16_skipped, header, record
from peak_rss import reset_peak

VOCAB = 1000  # the embedding matrix is not what is measured
TARGETS = ("short", "longformer", "full", "bigbird")


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    heads: int
    window: int  # Longformer's attention_window (w = window / 2 keys on each side)
    block: int  # BigBird's block size
    random_blocks: int
    attention_dropout: float = (
        0.0  # 0.1 in RoBERTa's, XLM-R's and BERT's configs: CPU SDPA then runs its math path
    )


BASE = Size(layers=12, hidden=768, heads=12, window=512, block=64, random_blocks=3)
QUICK = Size(layers=2, hidden=64, heads=2, window=64, block=16, random_blocks=2)


@dataclass
class Row:
    target: str
    length: int
    dtype: str
    seconds: float
    ms_per_token: float
    per_token_vs_short: float
    extra_peak_mib: float
    attention: str


def build(target: str, size: Size, max_len: int) -> PreTrainedModel:
    """A randomly initialised bare encoder of ``target`` holding ``max_len`` tokens (the short one: 512)."""
    common = {
        "vocab_size": VOCAB,
        "hidden_size": size.hidden,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "intermediate_size": 4 * size.hidden,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": size.attention_dropout,
    }
    torch.manual_seed(0)
    if target == "longformer":
        config = LongformerConfig(
            **common, max_position_embeddings=max_len + 2, attention_window=size.window, pad_token_id=1
        )
        return set_attention(LongformerModel(config, add_pooling_layer=False), "fast")
    if target == "bigbird":
        config = BigBirdConfig(
            **common,
            max_position_embeddings=max_len,
            attention_type="block_sparse",
            block_size=size.block,
            num_random_blocks=size.random_blocks,
        )
        return BigBirdModel(config, add_pooling_layer=False)
    positions = 512 if target == "short" else max_len
    config = RobertaConfig(**common, max_position_embeddings=positions + 2, pad_token_id=1)
    config._attn_implementation = "sdpa"
    return RobertaModel(config, add_pooling_layer=False)


def attention_run(model: PreTrainedModel, length: int) -> str:
    """The attention that runs at ``length`` tokens (BigBird falls back to full attention on short inputs)."""
    config = model.config
    if config.model_type == "big_bird":
        blocks = 5 + 2 * config.num_random_blocks
        return "block_sparse" if length > blocks * config.block_size else "original_full (too short)"
    if config.model_type == "longformer":
        return f"sliding window {config.attention_window}"
    return f"full ({config._attn_implementation})"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def step(model: PreTrainedModel, ids: torch.Tensor, autocast: bool) -> None:
    model.zero_grad(set_to_none=True)
    if model.config.model_type == "big_bird":
        model.set_attention_type("block_sparse")  # HF left it full after a shorter input: undo
    ctx = torch.autocast(ids.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        hidden = model(input_ids=ids).last_hidden_state
    hidden.float().pow(2).mean().backward()
    if ids.device.type == "cuda":
        torch.cuda.synchronize()


def measure(model: PreTrainedModel, length: int, autocast: bool, repeats: int) -> tuple[float, float]:
    """(minimum seconds of a forward + backward, extra peak MiB of one) on one random sequence: on CPU the
    peak resident set, on a GPU the peak allocation, above what was in use before the step."""
    device = next(model.parameters()).device
    ids = torch.randint(5, VOCAB, (1, length), generator=torch.Generator().manual_seed(length)).to(device)
    if repeats == 0:  # one step, timed and measured at once (minutes per step at base size on 2 cores)
        return _one_step(model, ids, autocast)
    step(model, ids, autocast)  # warm-up (allocator, kernels)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        step(model, ids, autocast)
        best = min(best, time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    extra = math.nan
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(model, ids, autocast)
        extra = (torch.cuda.max_memory_allocated() - before) / 2**20
        model.zero_grad(set_to_none=True)
    elif reset_peak():
        before = _status_mib("VmRSS")
        step(model, ids, autocast)
        extra = _status_mib("VmHWM") - before
        model.zero_grad(set_to_none=True)
    return best, extra


def _one_step(model: PreTrainedModel, ids: torch.Tensor, autocast: bool) -> tuple[float, float]:
    """(seconds, extra peak MiB) of a single step, no warm-up: what the long CPU rows cost at most."""
    cuda = ids.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    elif reset_peak():
        before = _status_mib("VmRSS")
    else:
        before = math.nan
    start = time.perf_counter()
    step(model, ids, autocast)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _status_mib("VmHWM")
    model.zero_grad(set_to_none=True)
    return seconds, peak - before


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """HF's BigBird warns on every short input; the row names that case itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def run(
    size: Size, lengths: list[int], dtypes: list[str], repeats: Callable[[int], int], device: str = "cpu"
) -> list[Row]:
    rows: list[Row] = []
    for dtype in dtypes:
        autocast = dtype == "bf16"
        anchor_model = build("short", size, 512).to(device)
        anchor, extra = measure(anchor_model, 512, autocast, repeats(512))
        del anchor_model
        anchor_ms = anchor / 512 * 1e3
        rows.append(Row("short", 512, dtype, anchor, anchor_ms, 1.0, extra, "full (sdpa)"))
        print(_line(rows[-1]), flush=True)
        for target in TARGETS[1:]:
            model = build(target, size, max(lengths)).to(device)
            for length in lengths:
                try:
                    seconds, extra = measure(model, length, autocast, repeats(length))
                    attention = attention_run(model, length)
                except RuntimeError as err:  # HF's BigBird block-sparse path fails under bf16 autocast
                    seconds = extra = math.nan
                    attention = f"failed: {str(err).splitlines()[0][:80]}"
                ms = seconds / length * 1e3
                row = Row(target, length, dtype, seconds, ms, ms / anchor_ms, extra, attention)
                rows.append(row)
                print(_line(row), flush=True)
            del model
    return rows


def _line(r: Row) -> str:
    return (
        f"{r.target:<10} {r.length:>5} {r.dtype:<4} {r.seconds:9.3f} s {r.ms_per_token:9.4f} ms/token "
        f"{r.per_token_vs_short:6.2f}x short/token {r.extra_peak_mib:9.0f} MiB  {r.attention}"
    )


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({r.dtype for r in rows}, key=["fp32", "bf16"].index)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"longformer": "tab:blue", "full": "tab:red", "bigbird": "tab:green"}
    styles = {"fp32": "-", "bf16": "--"}
    for dtype in dtypes:
        anchor = next(r for r in rows if r.target == "short" and r.dtype == dtype)
        for target in TARGETS[1:]:
            mine = [r for r in rows if r.target == target and r.dtype == dtype]
            xs = [r.length for r in mine]
            label = f"{target} ({dtype})"
            axes[0].plot(xs, [r.per_token_vs_short for r in mine], styles[dtype], marker="o",
                         color=colors[target], label=label)  # fmt: skip
            axes[1].plot(xs, [max(r.extra_peak_mib, 0.0) for r in mine], styles[dtype], marker="o",
                         color=colors[target], label=label)  # fmt: skip
        axes[0].axhline(1.0, color="grey", linestyle=":", label=f"short model at 512 ({dtype})")
        axes[1].axhline(
            anchor.extra_peak_mib, color="grey", linestyle=":", label=f"short model at 512 ({dtype})"
        )
    axes[0].set(xscale="log", xlabel="tokens per sequence", ylabel="fwd+bwd time per token / short model's",
                title="cost per token (1 = short model at 512)")  # fmt: skip
    axes[1].set(xscale="log", xlabel="tokens per sequence", ylabel="extra peak memory (MiB)",
                title="extra peak memory of one fwd+bwd")  # fmt: skip
    for ax in axes:
        lengths = sorted({r.length for r in rows})
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 layers, hidden 64, lengths 512-2048, one repeat")
    p.add_argument("--lengths", default=None, help="comma-separated (default 512,1024,2048,4096,8192)")
    p.add_argument("--json", default="benchmarks/results/bench_targets.json")
    p.add_argument("--plot", default="benchmarks/results/bench_targets.png")
    p.add_argument(FORCE_FLAG, dest="force_bf16", action="store_true", help=FORCE_HELP)
    p.add_argument(
        "--attention-dropout",
        type=float,
        default=0.0,
        help="attention dropout of every model (default 0; the source configs' 0.1 is what training runs)",
    )
    args = p.parse_args(argv)
    size = replace(QUICK if args.quick else BASE, attention_dropout=args.attention_dropout)
    default = "512,1024,2048" if args.quick else "512,1024,2048,4096,8192"
    lengths = [int(x) for x in (args.lengths or default).split(",")]
    print(header())
    dtypes = ["fp32"]
    skipped = bf16_skipped(cpu_info(), forced=args.force_bf16)
    if skipped:
        print(skipped)
    else:
        dtypes.append("bf16")
    print(f"# {size}; batch 1; anchor: short RoBERTa (512 positions, SDPA) at 512 tokens, same run")

    def repeats(length: int) -> int:
        """2 timed steps after a warm-up; 1 in --quick; at 4096 tokens and more one step with no warm-up."""
        return 1 if args.quick else 0 if length >= 4096 else 2

    with quiet_hf():
        rows = run(size, lengths, dtypes, repeats)
    out: dict[str, Any] = {"cpu": record(), "size": asdict(size), "rows": [asdict(r) for r in rows]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    title = f"{'quick' if args.quick else 'base'} size ({size.layers} layers, hidden {size.hidden}); {header()[2:]}"
    plot(rows, Path(args.plot), title)
    print(f"# wrote {args.json} and {args.plot}")
    return rows


if __name__ == "__main__":
    main()
