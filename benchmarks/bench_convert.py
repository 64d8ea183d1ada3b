"""What ``longify convert`` costs at xlm-roberta-base and -large size, against loading and saving the source.

Sources: random weights in xlm-roberta-base's shape (12 layers, hidden 768, 12 heads, intermediate 3072) and
-large's (24, 1024, 16, 4096), vocab 250002, 514 positions, saved as safetensors with a small trained Unigram
tokenizer (fewer tokens than the vocab: ``check_vocab`` allows it); nothing from the Hub. Each is converted to
``--max-pos`` positions per target with the defaults, timing the whole ``convert`` call and its phases (load:
source + plan; build: the target's weights; verify: against the source on short inputs; long run: full and
bigbird at ``--max-pos`` tokens, logits included (longformer has none); write: materialise + save). Anchor,
same run: ``AutoModelForMaskedLM.from_pretrained`` + ``save_pretrained`` of the source, what any conversion
must at least do ("x": the case over the anchor).
Peak RSS: the kernel's high-water mark (``VmHWM``, what ``ru_maxrss`` reads) of the whole process, reset
before each case (``malloc_trim``, then ``/proc/self/clear_refs``); else ``ru_maxrss`` of the run.

    .venv/bin/python benchmarks/bench_convert.py                  # base and large, 3 targets, 4096 positions
    .venv/bin/python benchmarks/bench_convert.py --sizes base --targets longformer --json out.json
    .venv/bin/python benchmarks/bench_convert.py --quick          # a tiny shape: checks the script in seconds

TMPDIR holds a source, the anchor's copy or one output at a time (large: about 5 GiB).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, XLMRobertaConfig
from transformers.utils import logging as hf_logging

from longify.tiny import train_tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_kind import header, record
from peak_rss import reset_peak

# the module (the package's `convert` is the function): its phases are wrapped, its `convert` called
CONVERT = importlib.import_module("longify.convert.convert")
PHASES = {  # functions `convert` calls from its module -> the phase their time counts to
    "make_plan": "load", "build_weights": "build", "final_positions": "build", "verify_target": "verify",
    "prove_long": "long run", "write": "write",
}  # fmt: skip
COLUMNS = tuple(dict.fromkeys(PHASES.values()))
TARGETS = ("longformer", "full", "bigbird")
GIB = 2**30


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 250002
    positions: int = 514  # 512 tokens + RoBERTa's padding offset


SHAPES = {"base": Shape(12, 768, 12, 3072), "large": Shape(24, 1024, 16, 4096)}
QUICK = Shape(2, 64, 4, 256, vocab=1000, positions=130)


@dataclass
class Row:
    size: str
    target: str  # "anchor": from_pretrained + save_pretrained
    seconds: float
    peak_rss_gib: float
    rss_before_gib: float
    x_anchor_time: float = 1.0
    x_anchor_rss: float = 1.0
    phases: dict[str, float] = field(default_factory=dict)


def make_source(shape: Shape, path: Path) -> Path:
    """An xlm-roberta masked LM of ``shape`` with random weights and a tokenizer, saved at ``path``."""
    tokenizer = train_tokenizer("xlm-roberta", model_max_length=shape.positions - 2)
    config = XLMRobertaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=shape.positions, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(config).save_pretrained(path)  # safetensors
    tokenizer.save_pretrained(path)
    return path


def _status_gib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def measure(size: str, target: str, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> Row:
    """Time ``fn(*args, **kwargs)`` and read the process's peak RSS during it."""
    resettable = reset_peak()
    before = _status_gib("VmRSS")
    start = time.perf_counter()
    fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux
    return Row(size, target, seconds, _status_gib("VmHWM") if resettable else maxrss, before)


@contextlib.contextmanager
def timed_phases() -> Iterator[dict[str, float]]:
    """Seconds per phase of the ``convert`` calls made inside (its module's functions wrapped meanwhile)."""
    spent: dict[str, float] = {}
    originals = {name: getattr(CONVERT, name) for name in PHASES}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[PHASES[name]] = spent.get(PHASES[name], 0.0) + time.perf_counter() - start

        return wrapper

    for name, fn in originals.items():
        setattr(CONVERT, name, timed(name, fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(CONVERT, name, fn)


def anchor(src: Path, out: Path) -> None:
    model = AutoModelForMaskedLM.from_pretrained(src)
    model.save_pretrained(out)


def bench_size(size: str, shape: Shape, targets: list[str], max_pos: int, work: Path) -> list[Row]:
    src = make_source(shape, work / "source")
    base = measure(size, "anchor", anchor, src, work / "anchor")
    shutil.rmtree(work / "anchor")
    print(line(base), flush=True)
    rows = [base]
    for target in targets:
        with timed_phases() as phases:
            row = measure(
                size, target, CONVERT.convert, str(src), work / target, max_pos=max_pos, target=target
            )
        shutil.rmtree(work / target)
        row.phases = dict(phases)
        row.x_anchor_time = row.seconds / base.seconds
        row.x_anchor_rss = row.peak_rss_gib / base.peak_rss_gib
        rows.append(row)
        print(line(row), flush=True)
    shutil.rmtree(src)
    return rows


def line(r: Row) -> str:
    phases = " ".join(f"{r.phases[p]:8.2f}" if p in r.phases else f"{'':8}" for p in COLUMNS)
    return (
        f"{r.size:<6} {r.target:<10} {r.seconds:8.2f} {phases} {r.peak_rss_gib:8.2f} "
        f"{r.x_anchor_time:7.2f}x {r.x_anchor_rss:7.2f}x"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="base,large", help="comma-separated, of: base, large")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of: {', '.join(TARGETS)}")
    p.add_argument("--max-pos", type=int, default=4096, help="positions of the long models (default 4096)")
    p.add_argument("--quick", action="store_true", help=f"one tiny shape instead of --sizes: {QUICK}")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    args.sizes = ["quick"] if args.quick else args.sizes.split(",")
    args.targets = args.targets.split(",")
    bad = [s for s in args.sizes if s not in SHAPES and s != "quick"]
    bad += [t for t in args.targets if t not in TARGETS]
    if bad:
        p.error(f"unknown size or target {', '.join(bad)}; sizes: base, large; targets: {', '.join(TARGETS)}")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    rss = "VmHWM reset per case" if reset_peak() else "ru_maxrss of the whole run (VmHWM not resettable)"
    print(header())
    print(f"# torch {torch.__version__}; max_pos {args.max_pos}; peak RSS: {rss}; anchor: load + save")
    print(f"{'size':<6} {'target':<10} {'seconds':>8} " + " ".join(f"{c:>8}" for c in COLUMNS)
          + f" {'peak GiB':>8} {'x time':>8} {'x RSS':>8}")  # fmt: skip
    rows: list[Row] = []
    shapes = {s: QUICK if s == "quick" else SHAPES[s] for s in args.sizes}
    for size, shape in shapes.items():
        with tempfile.TemporaryDirectory(prefix="bench_convert_") as work:
            rows += bench_size(size, shape, args.targets, args.max_pos, Path(work))
    if args.json:
        out = {"cpu": record(), "torch": torch.__version__, "max_pos": args.max_pos, "peak_rss": rss,
               "shapes": {s: asdict(v) for s, v in shapes.items()},
               "rows": [asdict(r) for r in rows]}  # fmt: skip
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"# wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
