"""The process's peak RSS per measured case on Linux: ``reset_peak`` hands freed heap back to the system (glibc
keeps it, so the RSS before a case would hold what earlier cases freed and the case's own peak would not show)
and restarts the kernel's high-water mark (``VmHWM``, what ``ru_maxrss`` reads)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from pathlib import Path


def reset_peak() -> bool:
    """Free, trim and restart the high-water mark; False where it cannot be reset (not Linux)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
