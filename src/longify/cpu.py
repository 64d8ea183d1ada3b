"""What this CPU is, for run records, benchmark headers and the ``--bf16`` check.

Not all CPUs are alike: with AVX-512 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` true) PyTorch runs bf16
matmuls through oneDNN, faster than fp32; with AVX2 only it takes a generic fallback GEMM that is several times
slower than fp32 (``EMULATED_BF16``). Floating-point results also differ in the last digits between kinds
(other kernels, other summation orders), so every run record names the kind that made it.

``probe`` is the one place that asks torch; tests fake another CPU by monkeypatching it
(``monkeypatch.setattr(longify.cpu, "probe", lambda: ("AVX512", True))``). torch is imported only when asked:
``longify.legacy`` (imported when a study is planned, without torch) uses this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

# Measured (issue 24) on an AVX2-only AMD EPYC (no AVX-512, no AMX; torch 2.13 CPU build, 2 threads): one
# 4096x768 @ 768x3072 linear layer takes 181 ms in fp32, 1636 ms in bf16 and 1298 ms under CPU bf16 autocast.
# A constant, not a timing at start-up: a run never spends seconds measuring the machine.
EMULATED_SLOWDOWN = "7-9x slower than fp32"
EMULATED_BF16 = (
    f"{EMULATED_SLOWDOWN} (measured on an AVX2 AMD EPYC: a 4096x768 @ 768x3072 linear layer, 181 ms in fp32, "
    "1298-1636 ms in bf16)"
)
FORCE_FLAG = "--bf16_on_emulated_cpu"
BF16_ON_EMULATED_CPU_HELP = (
    "Run --bf16 on a CPU without native bf16 (AVX2 only), where it is otherwise refused: there bf16 is "
    f"{EMULATED_SLOWDOWN}."
)


@dataclass(frozen=True)
class CpuInfo:
    """``capability``: ``torch.backends.cpu.get_cpu_capability()`` (``AVX512``, ``AVX2``, ``DEFAULT``, on ARM
    ``SVE256`` ...); ``native_bf16``: oneDNN runs bf16 natively here (``torch.ops.mkldnn._is_mkldnn_bf16_supported``);
    ``threads``: torch's intra-op threads now."""

    capability: str
    native_bf16: bool
    threads: int

    def record(self) -> dict[str, Any]:
        """The JSON form written into run records (``"cpu"``, next to ``"precision"``) and benchmark JSON."""
        return asdict(self)

    def describe(self) -> str:
        """One line for logs and benchmark headers: ``CPU AVX2, no native bf16, 2 threads``."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16 (bf16 emulated, slower than fp32)"
        return f"CPU {self.capability}, {bf16}, {self.threads} threads"


@cache
def _torch_probe() -> tuple[str, bool]:
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bf16 path either
        native = False
    return capability, native


def probe() -> tuple[str, bool]:
    """This CPU's capability and whether it has native bf16 (cached: neither changes while a process runs)."""
    return _torch_probe()


def cpu_info() -> CpuInfo:
    """This CPU as ``probe`` sees it, with torch's thread count at the time of the call."""
    import torch

    capability, native_bf16 = probe()
    return CpuInfo(capability, native_bf16, torch.get_num_threads())


def emulated_bf16_refusal(info: CpuInfo) -> str:
    """The one-line refusal of ``--bf16`` on a CPU without native bf16."""
    return (
        f"--bf16: this CPU ({info.capability}) has no native bf16, so bf16 runs {EMULATED_BF16}; "
        f"leave out --bf16 to run in fp32 (faster here), or pass {FORCE_FLAG} to run bf16 anyway"
    )
