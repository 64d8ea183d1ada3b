"""The CPU a benchmark ran on (``longify.cpu``), for its header and its JSON, and whether its bf16 cases run.

Timings from an AVX2 machine and an AVX-512 one are not comparable, and bf16 most of all: without native bf16
(AVX2 only) PyTorch's fallback GEMM makes bf16 7-9x slower than fp32, and the 4-layer bf16 attention benchmark
ran for more than 15 minutes without finishing its first timed repeats. So every benchmark names the CPU,
and the bf16 cases are skipped there, with a line, unless ``--bf16-on-emulated-cpu`` asks for them.
"""

from __future__ import annotations

from typing import Any

from longify.cpu import EMULATED_SLOWDOWN, CpuInfo, cpu_info

FORCE_FLAG = "--bf16-on-emulated-cpu"
FORCE_HELP = f"time the bf16 cases on a CPU without native bf16 too (there bf16 is {EMULATED_SLOWDOWN})"


def header() -> str:
    """The header line: ``# CPU AVX2, no native bf16 (...), 2 threads``."""
    return f"# {cpu_info().describe()}"


def record() -> dict[str, Any]:
    """The ``"cpu"`` entry of a benchmark's JSON: capability, native_bf16, threads."""
    return cpu_info().record()


def bf16_skipped(info: CpuInfo, *, small: bool = False, forced: bool = False) -> str | None:
    """Why this run leaves out its bf16 cases (None: they run). Only a CPU without native bf16 skips them, unless
    they are ``small`` (shapes that take seconds even there, such as ``bench_qa_eval.py --quick``'s) or
    ``forced``."""
    if info.native_bf16 or small or forced:
        return None
    return (
        f"# bf16 cases skipped: this CPU ({info.capability}) has no native bf16, so bf16 is {EMULATED_SLOWDOWN} "
        f"here and its figures would say nothing about the attention; pass {FORCE_FLAG} to time them anyway"
    )
